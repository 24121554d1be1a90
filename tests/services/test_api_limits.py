"""Hostile requests against the jobs API over real HTTP: traversal in URLs and bodies, oversized bodies (refused while
they arrive), slow specs (parsed off the event loop, so /healthz keeps answering) and malformed input (a 4xx that says
what is wrong, never a 5xx)."""

from __future__ import annotations

import json
import select
import socket
import threading
import time

import httpx
import pytest

from .server import get_bytes, job_body, raw_request

LIMIT = 64 * 1024

TRAVERSALS = [
    b"/v1/jobs/..", b"/v1/jobs/%2e%2e", b"/v1/jobs/%2E%2E", b"/v1/jobs/..%2f..%2fetc", b"/v1/jobs/%2e%2e%2f%2e%2e",
    b"/v1/jobs/.", b"/v1/jobs/a%00b", b"/v1/jobs/Demo", b"/v1/jobs/" + b"a" * 31, b"/v1/jobs/-a",
    b"/v1/namespaces/..%2f../jobs", b"/v1/namespaces/%2e%2e/jobs/x", b"/v1/namespaces/team/jobs/%2e%2e",
    b"/v1/jobs/%2fetc%2fpasswd", b"/v1/jobs/..\\..", b"/v1/jobs/%c0%ae%c0%ae",
]  # fmt: skip


def test_names_in_urls_never_reach_the_file_system(api, tmp_path):
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    token = api.team["Authorization"].encode()
    for method in (b"GET", b"DELETE"):
        for path in TRAVERSALS:
            request = get_bytes(path, b"Authorization: " + token).replace(b"GET ", method + b" ", 1)
            status, body = raw_request(str(api.client.base_url), request)
            assert status in (404, 422), (method, path, body)
            assert json.loads(body)["error"]
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before


def test_names_in_bodies_are_checked_before_anything_is_kept(api):
    for name in ("..", "../../etc", "a/b", "%2e%2e", "UPPER"):
        response = api.client.post("/v1/jobs", json=job_body(name), headers=api.team)
        assert response.status_code == 422, response.text
        assert response.json()["problems"][0]["path"] == "metadata.name"
    assert [p.name for p in api.jobs.root.iterdir()] == ["jobs.sqlite"] or not (api.jobs.root / "team").exists()


def test_the_local_backend_keeps_every_job_under_its_root(api):
    from llm_platform.services.backend import JobNotFound

    for namespace, name in [("..", "x"), ("team", ".."), ("team", "a/../../b"), ("/etc", "x"), ("team", "")]:
        with pytest.raises(JobNotFound):
            api.jobs.folder(namespace, name)
    assert api.jobs.folder("team", "demo") == api.jobs.root / "team" / "demo"


@pytest.mark.parametrize("api", [{"settings": {"max_body_bytes": LIMIT}}], indirect=True)
def test_a_declared_oversized_body_is_refused_before_it_is_read(api):
    head = (
        b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Authorization: " + api.team["Authorization"].encode() + b"\r\nContent-Length: 52428800\r\n\r\n"
    )
    started = time.monotonic()
    status, body = raw_request(str(api.client.base_url), head + b"{" * 1000)  # 50 MiB announced, 1 KB sent
    assert status == 413 and time.monotonic() - started < 5
    assert "65,536 bytes" in json.loads(body)["error"]


@pytest.mark.parametrize("api", [{"settings": {"max_body_bytes": LIMIT}}], indirect=True)
def test_a_chunked_body_is_refused_once_past_the_limit_while_healthz_answers(api):
    host, port = str(api.client.base_url).removeprefix("http://").split(":")
    latencies = []
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            t0 = time.monotonic()
            assert httpx.get(f"{api.client.base_url}/healthz", timeout=10).status_code == 200
            latencies.append(time.monotonic() - t0)
            time.sleep(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
            b"Authorization: " + api.team["Authorization"].encode() + b"\r\n\r\n"
        )
        chunk = b"%x\r\n%s\r\n" % (16384, b" " * 16384)
        while sent < 50 << 20 and not select.select([s], [], [], 0)[0]:
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 16384
        response = s.recv(65536)
    stop.set()
    prober.join()
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert sent < 8 << 20  # refused at the limit; what was sent past it sat in loopback's socket buffers (MiBs)
    assert latencies and max(latencies) < 2.0


def test_a_spec_is_validated_off_the_event_loop(api, monkeypatch):
    """While a spec is being parsed, /healthz still answers.

    The real parser is held at its start until /healthz has answered: were parsing done on the event loop, the loop
    would be stuck in the held parser and /healthz could not answer, so the test would time out instead of passing.
    No timing thresholds, so a loaded CI machine cannot make it flaky."""
    from llm_platform.services import job_body as job_body_module

    entered, released = threading.Event(), threading.Event()
    real_parse = job_body_module.parse_body

    def held_parse(*args, **kwargs):
        entered.set()
        released.wait(timeout=30)
        return real_parse(*args, **kwargs)

    monkeypatch.setattr(job_body_module, "parse_body", held_parse)
    result = {}
    worker = threading.Thread(
        target=lambda: result.setdefault("response", api.client.post("/v1/jobs", content=b"[1]", headers=api.team))
    )
    worker.start()
    try:
        assert entered.wait(timeout=30), "the POST never reached the parser"
        assert api.client.get("/healthz", timeout=10).status_code == 200
    finally:
        released.set()
        worker.join(timeout=30)
    assert result["response"].status_code == 422, result["response"].text


MALFORMED = [
    (b"", "the body is empty"),
    (b"\xff\xfe\x00", "not UTF-8"),
    (b"{not json", "not valid YAML"),
    (b"[1, 2]", "must be a mapping"),
    (b"null", "expected one YAML document"),
    (b'"text"', "must be a mapping"),
    (json.dumps({**job_body("x"), "kind": []}).encode(), "kind"),
    (json.dumps({**job_body("x"), "metadata": "x"}).encode(), "metadata"),
    (json.dumps({**job_body("x"), "spec": {"stages": "x"}}).encode(), "spec.stages"),
    (b"[" * 5000 + b"]" * 5000, ""),
    (b"a: &a [1]\nb: *a\n" * 3, ""),
]


@pytest.mark.parametrize(("body", "says"), MALFORMED, ids=[f"body{i}" for i in range(len(MALFORMED))])
def test_malformed_bodies_get_a_4xx_that_says_what_is_wrong(api, body, says):
    response = api.client.post("/v1/jobs", content=body, headers=api.team)
    assert 400 <= response.status_code < 500, response.text
    content = response.json()
    assert content["error"] and content["problems"], content
    assert says in json.dumps(content)


def test_every_other_refusal_has_the_same_shape(api):
    cases = [
        api.client.put("/v1/jobs", headers=api.team),
        api.client.get("/v2/anything", headers=api.team),
        api.client.get("/v1/jobs/", headers=api.team),
        api.client.get("/v1/namespaces/Team/jobs", headers=api.team),
        api.client.get("/v1/jobs/x", headers={"Authorization": "Bearer nope"}),
    ]
    assert [r.status_code for r in cases] == [405, 404, 404, 422, 401]
    for response in cases:
        assert response.json()["error"], response.text
    assert cases[3].json()["problems"] == [
        {
            "path": "path.namespace",
            "message": "a namespace is lowercase letters, digits and '-', starting and ending with a letter or digit, "
            "at most 63 characters; got 'Team'",
        }
    ]
