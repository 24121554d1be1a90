"""A real uvicorn server on 127.0.0.1 over the tiny trained model, started once per module (or per test when a test
needs its own settings)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_platform.services.openai_api.state import Limits, ServerState
from llm_platform.services.openai_server import ServeOptions, make_server

from ...observability.prometheus import free_port

MODEL_NAME = "tiny"
KEY = "sk-test-key"


@pytest.fixture(scope="session")
def model_dir(tiny_chat_model) -> Path:
    return tiny_chat_model


@dataclass
class Running:
    url: str
    state: ServerState
    server: Any
    thread: threading.Thread

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


@contextlib.contextmanager
def running_server(model_dir: Path, **settings: Any) -> Iterator[Running]:
    """Serve `model_dir` on a free loopback port until the block ends; waits for /health to say ready."""
    options = ServeOptions(model=model_dir, name=MODEL_NAME, **{"port": free_port(), **settings})
    server, state = make_server(options)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{options.port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        assert state.load_error is None, state.load_error
        time.sleep(0.05)
    else:
        raise TimeoutError("the server did not become ready within 60 s")
    try:
        yield Running(url, state, server, thread)
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def served(model_dir) -> Iterator[Running]:
    with running_server(model_dir, api_keys=(KEY,), limits=Limits(max_tokens=200, max_pending=64)) as running:
        yield running
