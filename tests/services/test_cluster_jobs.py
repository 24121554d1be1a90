"""The jobs API's cluster backend over HTTP, against kmock's Kubernetes API emulator with the real operator running:
POST creates the LLMJob object, the operator picks it up, GET shows its status, DELETE removes it; and every call
the API makes is allowed by the chart's Role for it."""

from __future__ import annotations

import httpx
import pytest

from llm_platform.api.policy import SpecPolicy
from llm_platform.operator.admission import admission_problems
from llm_platform.operator.kube import Kube
from llm_platform.operator.options import options_from_env
from llm_platform.services.cluster_jobs import USER_AGENT, ClusterJobs
from llm_platform.services.jobs_api import ApiSettings, create_app
from llm_platform.services.tokens import TokenFile
from tests.deploy.chart import needs_helm, one, template
from tests.operator.cluster import Cluster, wait_for
from tests.operator.helpers import DATA, PRETRAIN, SERVE, TOKENIZER, child, job_dict
from tests.operator.rbac import VERBS, allowed

from .server import add_token, auth, serving


@pytest.fixture
def cluster():
    c = Cluster()
    yield c
    c.close()


@pytest.fixture
def tokens(tmp_path):
    return tmp_path / "tokens.json"


@pytest.fixture
def client(cluster, tokens):
    """An HTTP client of the API (real uvicorn on 127.0.0.1) serving namespace `team`, with a `team` token."""
    jobs = ClusterJobs(Kube(cluster.configuration, user_agent=USER_AGENT), "team")
    headers = auth(add_token(tokens, "team"))
    with serving(create_app(jobs, TokenFile(tokens))) as url, httpx.Client(base_url=url, headers=headers) as c:
        yield c


def pod(name: str, job: str, stage: str) -> dict:
    """A pod as a stage's workload controller creates it (the training operator, the Job controller, KubeRay)."""
    labels = {"llmplatform.dev/job": job, "llmplatform.dev/stage": stage}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "team", "labels": labels}}


def job_body() -> dict:
    body = job_dict(DATA, TOKENIZER)
    del body["metadata"]["namespace"]
    return body


def test_a_submitted_job_is_created_and_run_by_the_operator(cluster, client):
    cluster.start_operator()
    created = client.post("/v1/jobs", json=job_body())
    assert created.status_code == 201, created.text
    assert created.json()["metadata"]["namespace"] == "team"
    wait_for(lambda: cluster.child("Job", child("demo", "data")), what="the data Job the operator creates")
    cluster.finish("Job", child("demo", "data"), "Succeeded")
    wait_for(lambda: client.get("/v1/jobs/demo").json().get("status", {}).get("stages", {}).get("data", {}).get(
        "phase") == "Succeeded", what="the data stage Succeeded, read through the API")  # fmt: skip
    assert [j["metadata"]["name"] for j in client.get("/v1/jobs").json()["items"]] == ["demo"]
    assert client.post("/v1/jobs", json=job_body()).status_code == 409

    assert client.delete("/v1/jobs/demo").status_code == 204
    wait_for(lambda: cluster.job("demo") is None, what="the job gone (the operator's finalizer done)")
    assert client.get("/v1/jobs/demo").status_code == 404


def test_what_the_cluster_cannot_run_is_refused_with_the_reason(cluster, client):
    body = job_body()
    body["spec"]["storage"] = {"uri": "file:///mnt/llm"}  # a local path, and no shared volume claim
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422
    (problem,) = response.json()["problems"]
    assert "file://" in problem["message"]
    assert cluster.job("demo") is None


def test_the_secrets_a_job_names_are_checked_against_the_operators_one_allow_list(cluster, tokens):
    """The API and the webhook read one Secret allow-list (LLMP_ALLOW_SECRETS, which the chart fills from
    operator.allow.secrets for both pods) and refuse with the same field paths and the same fix; the server's strict
    spec policy, built from an environment that names no Secret, lets the allowed ones through."""
    options = options_from_env({"LLMP_ALLOW_SECRETS": "s3-credentials, team/serve-*"})
    jobs = ClusterJobs(Kube(cluster.configuration, user_agent=USER_AGENT), "team", options)
    settings = ApiSettings(policy=SpecPolicy.from_env({}))
    headers = auth(add_token(tokens, "team"))

    def body(storage_secret: str, key_secret: str) -> dict:
        serve = {**SERVE, "serve": {"api_key_secret": key_secret}}
        job = job_dict(
            DATA, TOKENIZER, PRETRAIN, serve, storage={"uri": "s3://bucket/team/demo", "secret_ref": storage_secret}
        )
        del job["metadata"]["namespace"]
        return job

    with (
        serving(create_app(jobs, TokenFile(tokens), settings)) as url,
        httpx.Client(base_url=url, headers=headers) as c,
    ):
        response = c.post("/v1/jobs", json=body("db-admin", "other-key"))
        assert response.status_code == 422, response.text
        problems = response.json()["problems"]
        assert [p["path"] for p in problems] == ["spec.storage.secret_ref", "spec.stages[3].serve.api_key_secret"]
        assert all("--allow-secret" in p["hint"] and "operator.allow.secrets" in p["hint"] for p in problems)
        as_applied = {**body("db-admin", "other-key"), "metadata": {"name": "demo", "namespace": "team"}}
        webhook = admission_problems(as_applied, options=options)
        assert all(f"{p['path']}: {p['message']}; {p['hint']}" in webhook for p in problems)
        assert cluster.job("demo") is None

        created = c.post("/v1/jobs", json=body("s3-credentials", "serve-key"))
        assert created.status_code == 201, created.text


def test_an_allowed_secret_sent_to_a_storage_endpoint_not_listed_is_refused_as_the_webhook_refuses_it(cluster, tokens):
    """The exfiltration: an allowed storage Secret paired with an endpoint of the caller's choosing. The API reads the
    operator's list (LLMP_ALLOW_STORAGE_ENDPOINTS, which the chart fills from operator.allow.storageEndpoints for both
    pods) and refuses with the webhook's field path and fix; nothing is created. A listed endpoint passes the API's
    strict spec policy (which no longer holds a second list of endpoints) and is created."""
    options = options_from_env({"LLMP_ALLOW_STORAGE_ENDPOINTS": "http://minio.minio:9000"})
    jobs = ClusterJobs(Kube(cluster.configuration, user_agent=USER_AGENT), "team", options)
    settings = ApiSettings(policy=SpecPolicy.from_env({}))

    def body(endpoint: str) -> dict:
        storage = {"uri": "s3://bucket/team/demo", "secret_ref": "s3-credentials", "endpoint_url": endpoint}
        job = job_dict(DATA, TOKENIZER, storage=storage)
        del job["metadata"]["namespace"]
        return job

    with (
        serving(create_app(jobs, TokenFile(tokens), settings)) as url,
        httpx.Client(base_url=url, headers=auth(add_token(tokens, "team"))) as c,
    ):
        response = c.post("/v1/jobs", json=body("http://attacker.example:9000"))
        assert response.status_code == 422, response.text
        (problem,) = response.json()["problems"]
        assert problem["path"] == "spec.storage.endpoint_url"
        assert problem["message"] == (
            "storage endpoint 'http://attacker.example:9000' is not one this site allows (allowed: "
            "http://minio.minio:9000)"
        )
        assert "--allow-storage-endpoint" in problem["hint"] and "operator.allow.storageEndpoints" in problem["hint"]
        as_applied = {**body("http://attacker.example:9000"), "metadata": {"name": "demo", "namespace": "team"}}
        webhook = admission_problems(as_applied, options=options)
        assert f"{problem['path']}: {problem['message']}; {problem['hint']}" in webhook
        assert cluster.job("demo") is None

        created = c.post("/v1/jobs", json=body("http://minio.minio:9000"))
        assert created.status_code == 201, created.text
        assert cluster.job("demo")["spec"]["storage"]["endpoint_url"] == "http://minio.minio:9000"


def test_the_callers_namespace_is_the_tokens(cluster, client, tokens):
    body = job_body()
    body["metadata"]["namespace"] = "elsewhere"
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 403
    assert response.json()["error"].startswith("metadata.namespace: 'elsewhere' is not this request's namespace 'team'")
    assert cluster.job("demo") is None

    elsewhere = auth(add_token(tokens, "elsewhere"))  # a valid token, for a namespace this API does not serve
    routes = [("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/demo"), ("DELETE", "/v1/jobs/demo")]
    for method, path in [*routes, ("GET", "/v1/namespaces/elsewhere/jobs"), ("GET", "/v1/namespaces/team/jobs")]:
        response = client.request(method, path, json=job_body(), headers=elsewhere)
        assert response.status_code == 403, (method, path, response.text)
    assert "this API serves namespace 'team'" in client.get("/v1/jobs", headers=elsewhere).json()["error"]
    assert cluster.job("demo") is None


@needs_helm
def test_every_call_the_api_makes_is_allowed_by_its_role(cluster, client):
    client.post("/v1/jobs", json=job_body())
    client.get("/v1/jobs")
    client.get("/v1/jobs/demo")
    cluster.kube.create(pod("demo-data-0", "demo", "data"))
    assert client.get("/v1/jobs/demo/logs").status_code == 200
    client.delete("/v1/jobs/demo")
    rules = one(template("api.enabled=true"), "Role")["rules"]
    calls = set()
    for request in cluster.server.requests():
        if request.headers.get("User-Agent") != USER_AGENT or request.resource is None or request.action is None:
            continue
        if request.resource.plural is None:
            continue  # discovery: allowed to every authenticated client
        resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        calls.add((request.resource.group, resource, VERBS[request.action.name], request.name))
    assert {(g, r, v) for g, r, v, _ in calls} == {
        ("llmplatform.dev", "llmjobs", verb) for verb in ("create", "get", "list", "delete")
    } | {("", "pods", "list"), ("", "pods/log", "get")}
    assert [c for c in calls if not allowed(rules, *c)] == []
