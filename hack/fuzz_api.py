"""Fuzz the jobs REST API over HTTP: requests generated from its OpenAPI document by schemathesis (valid and invalid
ones), plus our own mutations of real LLMJobs (examples/*.yaml) in bodies, paths and headers.

It starts `llmp serve-api` (local backend, a fresh root, one slot held by a job that blocks, so an accepted job only
queues) on 127.0.0.1 and sends every request with a real token (a few with none, or another namespace's). A finding
is any 5xx, a dropped connection, a 4xx whose body does not say what is wrong (`{"error": ...}`), or a validation that
crashed (the API reports those as a 422 saying "this is a bug"). Prints a JSON report; exit code 1 on any finding.

Usage: python hack/fuzz_api.py [--schema-cases 500] [--mutated-cases 500] [--seed 0]
(tests/services/test_fuzz_api.py runs a small share of it on every test run)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
BUG = "this is a bug in llm-platform"


def start_server(root: Path) -> tuple[subprocess.Popen, str, dict[str, dict[str, str]]]:
    """`llmp serve-api` on a free loopback port with tokens for `team` (read-write) and `other`."""
    from llm_platform.services.tokens import add, new_token

    secrets = {}
    for who, namespace in (("team", "team"), ("other", "other")):
        secret, token = new_token(namespace, read_only=False)
        add(root / "tokens.json", token)
        secrets[who] = {"Authorization": f"Bearer {secret}"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "llm_platform.cli", "serve-api", "--root", str(root / "jobs")]
    command += ["--tokens", str(root / "tokens.json"), "--port", str(port), "--max-running", "1", "--max-queued", "4"]
    log = open(root / "server.log", "wb")  # noqa: SIM115 (the server's, closed when it exits)
    # jobs may read what this run puts in its own folder (the blocker's pipe), as a site's LLMP_READ_ROOTS would allow
    env = {**os.environ, "PYTHONPATH": str(REPO), "LLMP_READ_ROOTS": str(root)}
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"llmp serve-api did not start: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(0.2)
    fifo = root / "never-written.jsonl"
    os.mkfifo(fifo)
    blocker = {"apiVersion": "llmplatform.dev/v1alpha1", "kind": "LLMJob", "metadata": {"name": "blocker"},
               "spec": {"stages": [{"name": "data", "kind": "data",
                                    "data": {"sources": [{"type": "jsonl", "path": str(fifo)}]}}]}}  # fmt: skip
    assert httpx.post(f"{url}/v1/jobs", json=blocker, headers=secrets["team"]).status_code == 201
    return proc, url, secrets


class Findings:
    """Every response, judged; `findings` holds what should never happen."""

    def __init__(self):
        self.statuses: Counter[int] = Counter()
        self.findings: list[dict] = []
        self.sent = 0

    def judge(self, source: str, request: str, status: int | None, body: bytes) -> None:
        self.sent += 1
        if status is None:
            self.findings.append({"source": source, "request": request, "problem": "no response"})
            return
        self.statuses[status] += 1
        problem = None
        if status >= 500:
            problem = "HTTP 5xx"
        elif status >= 400:
            try:
                content = json.loads(body)
            except ValueError:
                content = None
            if not isinstance(content, dict) or not isinstance(content.get("error"), str) or not content["error"]:
                problem = f"HTTP {status} without an error message"
            elif BUG in body.decode(errors="replace"):
                problem = "validation crashed"
        if problem:
            self.findings.append({"source": source, "request": request[:300], "problem": problem,
                                  "body": body[:300].decode(errors="replace")})  # fmt: skip


def schema_cases(url: str, secrets: dict, n: int, seed: int, findings: Findings) -> None:
    """Schemathesis: half positive (valid per the document), half negative (violating it), every operation."""
    import schemathesis
    from schemathesis.generation import GenerationMode

    document = httpx.get(f"{url}/openapi.json", headers=secrets["team"]).json()
    schema = schemathesis.openapi.from_dict(document)
    pick = random.Random(seed)

    def _send(case, mode: str) -> None:
        who = pick.choices(["team", "other", "none"], [8, 1, 1])[0]
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        headers |= secrets.get(who, {})
        request = f"{case.method} {case.formatted_path} ({mode}, {who})"
        try:
            response = case.call(base_url=url, headers=headers, timeout=60)
        except Exception as e:  # a dropped connection, or a request the client itself cannot encode
            if type(e).__name__ in ("InvalidHeader", "InvalidURL", "UnicodeEncodeError", "LocationParseError"):
                return
            findings.judge("schemathesis", f"{request}: {type(e).__name__}: {e}", None, b"")
            return
        findings.judge("schemathesis", request, response.status_code, response.content)

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        _run_mode(schema.as_strategy(mode), n // 2, seed, lambda case, m=mode.value: _send(case, m))


def _run_mode(strategy, n: int, seed: int, send) -> None:
    """Draw `n` cases from `strategy` (no shrinking: every case is sent once) and send each."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    @hypothesis_seed(seed)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(strategy)
    def run(case):
        send(case)

    run()


def seeds() -> list[dict]:
    jobs = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "examples").glob("*.yaml"))]
    for job in jobs:
        job["metadata"].pop("namespace", None)
    return jobs


ODD_VALUES = [
    None, "", " ", [], {}, 0, -1, 2**63, -(2**63), 1e308, float("nan"), True, "../../etc/passwd", "/etc/hostname",
    "file:///etc", "s3://", "$(rm -rf /)", "\u0000", "\ufffd\u202e", "x" * 70_000, [[[[[]]]]], {"a": {"b": {}}}, "*a",
    "!!python/object:os.system", "%2e%2e", "0x10", "1e400",
]  # fmt: skip


def _paths(node, prefix=()):
    """Every (path, value) in a nested dict/list."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def mutate_job(job: dict, rng: random.Random) -> dict:
    """One to three structural mutations: replace a value with an odd one, drop a key, add an unknown key, duplicate
    a list item, or wrap a value in deep nesting."""
    job = copy.deepcopy(job)
    for _ in range(rng.randint(1, 3)):
        path, _value = rng.choice(list(_paths(job))[1:] or [((), job)])
        parent = job
        for part in path[:-1]:
            parent = parent[part]
        key = path[-1] if path else None
        action = rng.choice(["odd", "odd", "drop", "extra", "dup", "deep"])
        if key is None:
            continue
        if action == "odd":
            parent[key] = rng.choice(ODD_VALUES)
        elif action == "drop" and isinstance(parent, dict):
            parent.pop(key)
        elif action == "extra" and isinstance(parent, dict):
            parent[rng.choice(["x", "namespace", "from", "__class__", "kind"])] = rng.choice(ODD_VALUES)
        elif action == "dup" and isinstance(parent, list):
            parent.extend([copy.deepcopy(parent[key])] * rng.randint(1, 50))
        elif action == "deep":
            value = parent[key]
            for _ in range(rng.choice([10, 200, 2000])):
                value = [value]
            parent[key] = value
    return job


def mutate_text(text: str, rng: random.Random) -> bytes:
    """Text-level damage: truncation, random bytes, YAML aliases and tags, a second document, odd encodings."""
    action = rng.choice(["truncate", "bytes", "alias", "tag", "documents", "utf16", "indent"])
    if action == "truncate":
        return text[: rng.randint(0, len(text))].encode()
    if action == "bytes":
        data = bytearray(text.encode())
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if action == "alias":
        bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
            for i in range(8)
        )
        return (text + "\n" + bomb).encode()
    if action == "tag":
        return text.replace("kind: LLMJob", "kind: !!python/object/apply:os.system ['true']", 1).encode()
    if action == "documents":
        return (text + "\n---\n" + text).encode()
    if action == "utf16":
        return text.encode("utf-16")
    return text.replace("\n  ", "\n\t", rng.randint(1, 5)).encode()


PATHS = ["/v1/jobs/{}", "/v1/namespaces/{}/jobs", "/v1/namespaces/team/jobs/{}", "/v1/namespaces/{}/jobs/x"]
SEGMENTS = ["..", "%2e%2e", "%2E%2e%2F", "..%2f..%2fetc", ".", "a%00", "%ff%fe", "A", "a" * 300, "-", "%20",
            "quickstart", "team", "other", "%252e%252e", "a;b", "a?b=1", "~root", "%c0%ae"]  # fmt: skip


def raw(url: str, data: bytes) -> tuple[int | None, bytes]:
    host, port = url.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=60) as s:
            s.sendall(data)
            received = b""
            while chunk := s.recv(65536):
                received += chunk
    except OSError:
        return None, b""
    head, _, body = received.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ", 2)[1]), body
    except (IndexError, ValueError):
        return None, received


def mutated_cases(url: str, secrets: dict, n: int, seed: int, findings: Findings) -> None:
    rng = random.Random(seed)
    jobs = seeds()
    client = httpx.Client(base_url=url, timeout=60)
    for i in range(n):
        who = rng.choices(["team", "other", "none"], [8, 1, 1])[0]
        headers = dict(secrets.get(who, {}))
        kind = rng.choice(["json", "json", "yaml", "text", "path", "header"])
        job = mutate_job(rng.choice(jobs), rng)
        job.setdefault("metadata", {}) if isinstance(job.get("metadata"), dict) else None
        if isinstance(job.get("metadata"), dict):
            job["metadata"]["name"] = f"fz{seed}-{i}" if rng.random() < 0.9 else job["metadata"].get("name")
        if kind == "path":
            path = rng.choice(PATHS).format(rng.choice(SEGMENTS)).encode()
            method = rng.choice([b"GET", b"DELETE", b"POST", b"PUT"])
            auth = b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
            request = method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n"
            status, body = raw(url, request + auth + b"\r\n")
            findings.judge("mutator", request.split(b"\r\n")[0].decode(errors="replace"), status, body)
            continue
        if kind == "json":
            data = json.dumps(job, allow_nan=True).encode()
            headers["Content-Type"] = "application/json"
        elif kind == "yaml":
            data = yaml.safe_dump(job, sort_keys=False).encode()
            headers["Content-Type"] = "application/yaml"
        elif kind == "text":
            data = mutate_text(yaml.safe_dump(job, sort_keys=False), rng)
            headers["Content-Type"] = rng.choice(["application/yaml", "application/json", "text/plain", "x/y"])
        else:
            data = json.dumps(job).encode()
            headers |= rng.choice([{"Content-Type": "multipart/form-data; boundary=x"}, {"Content-Encoding": "gzip"},
                                   {"Transfer-Encoding": "chunked"}, {"Expect": "100-continue"}])  # fmt: skip
        path = rng.choice(["/v1/jobs", "/v1/namespaces/team/jobs", "/v1/namespaces/other/jobs"])
        try:
            response = client.post(path, content=data, headers=headers)
        except httpx.TransportError as e:
            findings.judge("mutator", f"POST {path} ({kind}): {type(e).__name__}", None, b"")
            continue
        findings.judge("mutator", f"POST {path} ({kind}, {who}) {data[:120]!r}", response.status_code, response.content)
    client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schema-cases", type=int, default=500)
    parser.add_argument("--mutated-cases", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--server-log", type=Path, help="Keep the server's log (tracebacks of any finding) here.")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    sys.setrecursionlimit(20_000)  # the mutator nests values 2,000 deep and serialises them
    with tempfile.TemporaryDirectory(prefix="llmp-fuzz-") as tmp:
        root = Path(tmp)
        proc, url, secrets = start_server(root)
        findings = Findings()
        started = time.monotonic()
        try:
            schema_cases(url, secrets, args.schema_cases, args.seed, findings)
            schema_seconds = time.monotonic() - started
            mutated_cases(url, secrets, args.mutated_cases, args.seed, findings)
            healthy = httpx.get(f"{url}/healthz", timeout=10).status_code == 200 and proc.poll() is None
        finally:
            for job in httpx.get(f"{url}/v1/jobs", headers=secrets["team"], timeout=60).json()["items"]:
                httpx.delete(f"{url}/v1/jobs/{job['metadata']['name']}", headers=secrets["team"], timeout=60)
            proc.terminate()
            proc.wait()
        server_log = (root / "server.log").read_text(errors="replace")
        crashes_logged = server_log.count("Traceback")
        if args.server_log:
            args.server_log.write_text(server_log)
    report = {
        "requests": findings.sent,
        "seconds": round(time.monotonic() - started, 1),
        "schemathesis_seconds": round(schema_seconds, 1),
        "statuses": dict(sorted(findings.statuses.items())),
        "findings": len(findings.findings),
        "findings_by_kind": dict(Counter(f["problem"] for f in findings.findings)),
        "tracebacks_in_server_log": crashes_logged,
        "server_healthy_after": healthy,
        "first_findings": findings.findings[:10],
    }
    print(json.dumps(report, indent=2))
    return 0 if not findings.findings and not crashes_logged and healthy else 1


if __name__ == "__main__":
    sys.exit(main())
