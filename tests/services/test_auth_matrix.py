"""Every route of the jobs API x every kind of caller x both backends, over HTTP against real uvicorn: no token, a wrong
token, a token for another namespace, a read-only token and the right token. Each case checks that a refused call
changed nothing. Local backend: jobs in `team` stay queued behind one job that blocks (so the matrix starts no extra
processes). Cluster backend: the API serves namespace `team` against kmock's Kubernetes API emulator."""

from __future__ import annotations

import re

import httpx
import pytest

from llm_platform.api import parse_job
from llm_platform.operator.kube import Kube
from llm_platform.operator.naming import LLMJOB_API_VERSION
from llm_platform.services.cluster_jobs import USER_AGENT, ClusterJobs
from llm_platform.services.jobs_api import create_app
from llm_platform.services.local_jobs import LocalJobs
from llm_platform.services.tokens import TokenFile, new_token
from tests.operator.cluster import Cluster
from tests.operator.helpers import DATA, job_dict

from .server import add_token, auth, blocked_job, get_bytes, raw_request, serving, stop_all

CALLERS = ["none", "wrong", "other", "read_only", "right"]
# (method, path): expected status for each caller, in the order of CALLERS
MATRIX = {
    ("GET", "/healthz"): (200, 200, 200, 200, 200),
    ("GET", "/openapi.json"): (401, 401, 200, 200, 200),
    ("GET", "/docs"): (401, 401, 200, 200, 200),
    ("POST", "/v1/jobs"): (401, 401, 403, 403, 201),
    ("GET", "/v1/jobs"): (401, 401, 200, 200, 200),
    ("GET", "/v1/jobs/demo"): (401, 401, 404, 200, 200),  # /v1/jobs is the token's namespace: `other` has no demo
    ("GET", "/v1/jobs/demo/logs"): (401, 401, 404, 200, 200),
    ("DELETE", "/v1/jobs/demo"): (401, 401, 404, 403, 204),
    ("POST", "/v1/namespaces/team/jobs"): (401, 401, 403, 403, 201),
    ("GET", "/v1/namespaces/team/jobs"): (401, 401, 403, 200, 200),
    ("GET", "/v1/namespaces/team/jobs/demo"): (401, 401, 403, 200, 200),
    ("GET", "/v1/namespaces/team/jobs/demo/logs"): (401, 401, 403, 200, 200),
    ("DELETE", "/v1/namespaces/team/jobs/demo"): (401, 401, 403, 403, 204),
}
# the cluster backend serves one namespace: a token for another gets 403 on /v1/jobs too, not an empty namespace
CLUSTER = {
    route: (*codes[:2], 403, *codes[3:]) if route[1].startswith("/v1/") else codes for route, codes in MATRIX.items()
}
EXPECTED = {"local": MATRIX, "cluster": CLUSTER}
CASES = [(method, path, caller) for method, path in MATRIX for caller in CALLERS]


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokens") / "tokens.json"
    secrets = {"right": add_token(path, "team"), "read_only": add_token(path, "team", True)}
    secrets["other"] = add_token(path, "other")
    secrets["wrong"] = new_token("team", False)[0]  # well-formed, never added to the file
    return path, {name: auth(secret) for name, secret in secrets.items()} | {"none": {}}


BACKENDS = pytest.mark.parametrize("server", ["local", "cluster"], indirect=True)


@pytest.fixture(scope="module")
def server(request, tokens, tmp_path_factory):
    """(backend name, HTTP client, headers of each caller, the backend, names of the jobs in a namespace, the app)."""
    path, headers = tokens
    if request.param == "local":
        root = tmp_path_factory.mktemp("matrix")
        jobs = LocalJobs(root / "jobs", max_running=1, max_queued=50)
        jobs.submit("team", parse_job(blocked_job("blocker", root / "never-written.jsonl")))  # holds the only slot

        def names(namespace: str) -> set[str]:
            return {row.name for row in jobs.table.in_namespace(namespace)}

        def close() -> None:
            stop_all(jobs)
            jobs.close()
    else:
        cluster = Cluster()
        kube = Kube(cluster.configuration, user_agent=USER_AGENT)
        jobs = ClusterJobs(kube, "team")

        def names(namespace: str) -> set[str]:
            return {o["metadata"]["name"] for o in kube.list(LLMJOB_API_VERSION, "LLMJob", namespace)}

        close = cluster.close
    app = create_app(jobs, TokenFile(path))
    try:
        with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            yield request.param, client, headers, jobs, names, app
    finally:
        close()


@BACKENDS
@pytest.mark.parametrize(("method", "path", "caller"), CASES, ids=[" ".join(case) for case in CASES])
def test_route_x_caller(server, method, path, caller):
    expected = EXPECTED[server[0]][method, path][CALLERS.index(caller)]
    _, client, headers, jobs, names, _ = server
    if "demo" not in names("team"):
        jobs.submit("team", parse_job(job_dict(DATA, name="demo")))
    before = {ns: names(ns) for ns in ("team", "other")}
    body = job_dict(DATA, name="posted") if method == "POST" else None
    response = client.request(method, path, json=body, headers=headers[caller])
    assert response.status_code == expected, response.text
    after = {ns: names(ns) for ns in ("team", "other")}
    if expected >= 400:
        assert after == before, "a refused call changed the jobs"
        assert set(response.json()) == {"error"} and len(response.json()["error"]) > 20
    if expected == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "token" in response.json()["error"]
    if expected == 403:
        assert re.search(r"read-only|namespace", response.json()["error"])
    if expected == 201:
        assert after["team"] == before["team"] | {"posted"}
        jobs.delete("team", "posted")
    if expected == 204:
        assert after["team"] == before["team"] - {"demo"}
    if method == "GET" and path.endswith("/jobs") and expected == 200:
        listed = {item["metadata"]["name"] for item in response.json()["items"]}
        assert listed == (set() if caller == "other" else before["team"])


@BACKENDS
def test_the_matrix_covers_every_route(server):
    *_, app = server
    routes = {(method, route.path) for route in app.routes for method in getattr(route, "methods", ())} - {
        ("HEAD", "/docs"), ("HEAD", "/openapi.json")}  # fmt: skip
    covered = {(m, re.sub(r"/team(/|$)", r"/{namespace}\1", p).replace("/demo", "/{name}")) for m, p in MATRIX}
    assert routes == covered


@pytest.mark.parametrize(
    "header",
    [b"Basic dGVhbTp0ZWFt", b"Bearer", b"Bearer ", b"bearer llmp_x", b"Bearer llmp_\xc3\xa9\xff", b"Token a"]
    + [b"Bearer " + b"a" * 9000],
)
@BACKENDS
def test_malformed_authorization_headers_are_401(server, header):
    _, client, *_ = server
    status, body = raw_request(str(client.base_url), get_bytes(b"/v1/jobs", b"Authorization: " + header))
    assert status == 401, body


@pytest.mark.parametrize("api", [{"settings": {"public_docs": True}}], indirect=True)
def test_docs_are_public_only_when_the_operator_says_so(api):
    assert api.client.get("/docs").status_code == 200
    document = api.client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "LLMJob" in document["components"]["schemas"]
    assert api.client.get("/v1/jobs").status_code == 401


def test_a_revoked_token_is_refused_by_the_running_server(tmp_path):
    from llm_platform.services.tokens import read, revoke

    tokens = tmp_path / "tokens.json"
    secret = add_token(tokens, "team")
    jobs = LocalJobs(tmp_path / "jobs")
    try:
        with serving(create_app(jobs, TokenFile(tokens))) as url:
            assert httpx.get(f"{url}/v1/jobs", headers=auth(secret)).status_code == 200
            assert revoke(tokens, read(tokens)[0].id)
            response = httpx.get(f"{url}/v1/jobs", headers=auth(secret))
            assert response.status_code == 401 and "no tokens yet" in response.json()["error"]
            add_token(tokens, "team")
            response = httpx.get(f"{url}/v1/jobs", headers=auth(secret))
            assert response.status_code == 401 and "unknown or revoked" in response.json()["error"]
            tokens.write_text('{"tokens": [{"namespace": "Team!", "sha256": "x"}]}')
            response = httpx.get(f"{url}/v1/jobs", headers=auth(secret))
            assert response.status_code == 401 and "token file is invalid" in response.json()["error"]
    finally:
        jobs.close()
