"""The jobs API served by real uvicorn on 127.0.0.1 (an ephemeral port) for tests that talk HTTP to it, plus tokens
and small jobs those tests submit."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import uvicorn

from llm_platform.services import tokens as token_file
from llm_platform.services.local_jobs import LocalJobs
from llm_platform.services.processes import stop_group
from tests.operator.helpers import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """Run `app` under uvicorn in a thread; yields its base URL, stops it on exit."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "uvicorn to start")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def wait_for(condition: Callable[[], object], what: str, timeout: float = 180.0) -> object:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return result


def add_token(path: Path, namespace: str, read_only: bool = False) -> str:
    secret, token = token_file.new_token(namespace, read_only)
    token_file.add(path, token)
    return secret


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def stop_all(jobs: LocalJobs) -> None:
    """Stop every job process a test left running (DELETE's own path, so nothing outlives the test)."""
    for state in ("running", "queued"):
        for row in jobs.table.in_state(state):
            with contextlib.suppress(Exception):
                jobs.delete(row.namespace, row.name)
            if row.process is not None:
                stop_group(row.process)


def job_body(name: str, *stages: dict, namespace: str | None = None, **spec) -> dict:
    metadata = {"name": name} | ({"namespace": namespace} if namespace else {})
    default = {"name": "data", "kind": "data", "data": {"sources": [{"type": "stdlib", "include": "token*.py"}]}}
    return {
        "apiVersion": "llmplatform.dev/v1alpha1",
        "kind": "LLMJob",
        "metadata": metadata,
        "spec": {"stages": list(stages) or [default], **spec},
    }


def failing_data_stage(folder: Path) -> dict:
    """A data stage that runs and fails: its one source keeps no document."""
    (folder / "empty.jsonl").write_text('{"text": ""}\n')
    return {"name": "data", "kind": "data", "data": {"sources": [{"type": "jsonl", "path": str(folder / "*.jsonl")}]}}


def blocked_job(name: str, fifo: Path) -> dict:
    """A real job that stays Running until its process is stopped: its data stage reads a named pipe that no one
    writes to (open() waits for a writer)."""
    if not fifo.exists():
        os.mkfifo(fifo)
    source = {"type": "jsonl", "path": str(fifo)}
    return job_body(name, {"name": "data", "kind": "data", "data": {"sources": [source]}})


class ApiProcess:
    """`llmp serve-api` as its own process, for tests that kill the server (kill -9) and start it again."""

    def __init__(self, root: Path, tokens: Path, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "llm_platform.cli", "serve-api", "--root", str(root), "--tokens", str(tokens)]
        # the server's jobs may read what the test puts beside its root (`LLMP_READ_ROOTS`, as a site would set it)
        env = {**os.environ, "PYTHONPATH": str(REPO), "LLMP_READ_ROOTS": str(root.parent)}
        self.proc = subprocess.Popen(
            [*command, "--port", str(self.port), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        wait_for(self._up, "llmp serve-api to answer /healthz", timeout=180)

    def _up(self) -> bool:
        assert self.proc.poll() is None, self.proc.stderr.read().decode()
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stderr.close()


def raw_request(url: str, request: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    """Send bytes exactly as given (no client normalising `..` or refusing odd headers); (status, body)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def get_bytes(path: bytes, *headers: bytes) -> bytes:
    lines = [b"GET " + path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close", *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"
