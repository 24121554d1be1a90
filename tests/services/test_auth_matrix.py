"""Every route of the jobs API x every kind of caller, over HTTP against real uvicorn: no token, a wrong token, a token
for another namespace, a read-only token and the right token. Jobs in `team` stay queued behind one job that blocks
(so the matrix starts no extra processes), and each case checks that a refused call changed nothing."""

from __future__ import annotations

import re

import httpx
import pytest

from llm_platform.api import parse_job
from llm_platform.services.jobs_api import create_app
from llm_platform.services.local_jobs import LocalJobs
from llm_platform.services.tokens import TokenFile, new_token

from .server import add_token, auth, blocked_job, get_bytes, job_body, raw_request, serving, stop_all

CALLERS = ["none", "wrong", "other", "read_only", "right"]
# (method, path): expected status for each caller, in the order of CALLERS
MATRIX = {
    ("GET", "/healthz"): (200, 200, 200, 200, 200),
    ("GET", "/openapi.json"): (401, 401, 200, 200, 200),
    ("GET", "/docs"): (401, 401, 200, 200, 200),
    ("POST", "/v1/jobs"): (401, 401, 403, 403, 201),
    ("GET", "/v1/jobs"): (401, 401, 200, 200, 200),
    ("GET", "/v1/jobs/demo"): (401, 401, 404, 200, 200),  # /v1/jobs is the token's namespace: `other` has no demo
    ("DELETE", "/v1/jobs/demo"): (401, 401, 404, 403, 204),
    ("POST", "/v1/namespaces/team/jobs"): (401, 401, 403, 403, 201),
    ("GET", "/v1/namespaces/team/jobs"): (401, 401, 403, 200, 200),
    ("GET", "/v1/namespaces/team/jobs/demo"): (401, 401, 403, 200, 200),
    ("DELETE", "/v1/namespaces/team/jobs/demo"): (401, 401, 403, 403, 204),
}
CASES = [
    (method, path, caller, codes[i]) for (method, path), codes in MATRIX.items() for i, caller in enumerate(CALLERS)
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("matrix")
    tokens = root / "tokens.json"
    secrets = {"right": add_token(tokens, "team"), "read_only": add_token(tokens, "team", True)}
    secrets["other"] = add_token(tokens, "other")
    secrets["wrong"] = new_token("team", False)[0]  # well-formed, never added to the file
    headers = {name: auth(secret) for name, secret in secrets.items()} | {"none": {}}
    jobs = LocalJobs(root / "jobs", max_running=1, max_queued=50)
    jobs.submit("team", parse_job(blocked_job("blocker", root / "never-written.jsonl")))  # holds the only slot
    app = create_app(jobs, TokenFile(tokens))
    try:
        with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            yield client, headers, jobs, app
    finally:
        stop_all(jobs)
        jobs.close()


def _names(jobs: LocalJobs, namespace: str) -> set[str]:
    return {row.name for row in jobs.table.in_namespace(namespace)}


@pytest.mark.parametrize(("method", "path", "caller", "expected"), CASES, ids=[f"{m} {p} {c}" for m, p, c, _ in CASES])
def test_route_x_caller(server, method, path, caller, expected):
    client, headers, jobs, _ = server
    if "demo" not in _names(jobs, "team"):
        jobs.submit("team", parse_job(job_body("demo", namespace="team")))
    before = {ns: _names(jobs, ns) for ns in ("team", "other")}
    body = job_body("posted", namespace="team") if method == "POST" else None
    response = client.request(method, path, json=body, headers=headers[caller])
    assert response.status_code == expected, response.text
    after = {ns: _names(jobs, ns) for ns in ("team", "other")}
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
        names = {item["metadata"]["name"] for item in response.json()["items"]}
        assert names == (set() if caller == "other" else {"blocker", "demo"})


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
def test_malformed_authorization_headers_are_401(server, header):
    client, *_ = server
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
            assert httpx.get(f"{url}/v1/jobs", headers=auth(secret)).status_code == 401
            tokens.write_text('{"tokens": [{"namespace": "Team!", "sha256": "x"}]}')
            response = httpx.get(f"{url}/v1/jobs", headers=auth(secret))
            assert response.status_code == 401 and "token file is invalid" in response.json()["error"]
    finally:
        jobs.close()
