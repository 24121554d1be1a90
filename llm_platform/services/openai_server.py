"""The OpenAI-compatible inference server over our engine: `serve(options)` runs it under uvicorn.

    llmp serve runs/quickstart/export --port 8000          # or an s3:// folder, or STORE:STAGE

Endpoints: `POST /v1/completions`, `POST /v1/chat/completions` (SSE streaming, tools, logprobs, n, stop, seed and
every sampling option of the engine), `GET /v1/models` (the model and its adapters), `GET /health` (200 once the
weights are loaded), `GET /metrics` (Prometheus, vLLM's metric names). SIGTERM (or Ctrl-C) stops accepting
connections, lets the requests in flight finish, then exits.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_platform.api.serve import ContentFilterSpec
from llm_platform.observability.serving import ServingMetrics

from .openai_api.app import create_app
from .openai_api.content_filter import ContentFilter
from .openai_api.state import Limits, ServerState

API_KEY_ENV = "LLMP_API_KEY"
"""Where a key from a Kubernetes Secret arrives (the serve Deployment maps the Secret's `api-key` entry to it)."""


@dataclass
class ServeOptions:
    model: Path
    name: str = "model"
    host: str = "127.0.0.1"
    port: int = 8000
    adapters: dict[str, str] = field(default_factory=dict)
    quantization: str | None = None
    draft_model: str | None = None
    api_keys: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    max_batch: int = 32
    content_filter: ContentFilterSpec = field(default_factory=ContentFilterSpec)
    graceful_timeout_s: float = 30.0


def api_keys_from(option: str | None) -> tuple[str, ...]:
    """The keys clients must present: `--api-key`, else the environment variable a Secret fills, else none."""
    key = option or os.environ.get(API_KEY_ENV)
    return (key,) if key else ()


def engine_loader(options: ServeOptions) -> Callable[[], Any]:
    def load() -> Any:
        from llm_platform.trainer.inference.engine import EngineConfig, LLMEngine

        return LLMEngine.from_pretrained(
            options.model,
            config=EngineConfig(max_num_seqs=options.max_batch),
            quantization=options.quantization,
            adapters=options.adapters or None,
            draft_model=options.draft_model,
        )

    return load


def build_app(options: ServeOptions, load_engine: Callable[[], Any] | None = None):
    """The app and its state (the state lets an embedding caller, such as the serve stage, see when it is ready)."""
    metrics = ServingMetrics(options.name)
    state = ServerState(
        model_name=options.name,
        metrics=metrics,
        content_filter=ContentFilter(options.content_filter, metrics),
        limits=options.limits,
        api_keys=frozenset(options.api_keys),
        adapters=tuple(options.adapters),
    )
    return create_app(state, load_engine or engine_loader(options)), state


def make_server(options: ServeOptions, load_engine: Callable[[], Any] | None = None):
    """(uvicorn.Server, state) ready to `run()`; graceful shutdown waits `graceful_timeout_s` for open requests."""
    import uvicorn

    app, state = build_app(options, load_engine)
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_level="warning",
        timeout_graceful_shutdown=options.graceful_timeout_s,
    )
    return uvicorn.Server(config), state


class LoadFailed(RuntimeError):
    """The model did not load; the server stopped instead of answering 503 forever."""


def stop_if_load_fails(server: Any, state: ServerState) -> threading.Thread:
    """A watcher that ends the server when the model fails to load (a process manager or the kubelet then sees the
    failure and its reason, instead of a server that is up but never ready)."""

    def watch() -> None:
        while not state.ready and state.load_error is None:
            time.sleep(0.05)
        if state.load_error is not None:
            server.should_exit = True

    thread = threading.Thread(target=watch, name="load-watch", daemon=True)
    thread.start()
    return thread


def serve(options: ServeOptions) -> None:
    """Run until SIGTERM/Ctrl-C; raises `LoadFailed` if the model does not load."""
    server, state = make_server(options)
    stop_if_load_fails(server, state)
    server.run()
    if state.load_error is not None:
        raise LoadFailed(f"the model did not load: {state.load_error}") from state.load_error
