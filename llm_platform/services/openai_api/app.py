"""The FastAPI app: routes, API keys, body size limit, error shapes, health and metrics.

The model loads in a background thread after the server starts listening, so probes can ask: `/health` answers 503
until the weights are in and 200 after (the Deployment's readiness probe), the API answers 503 meanwhile.
`/health` and `/metrics` need no key (kubelet and Prometheus carry none); everything under `/v1` does when keys
are set.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .async_engine import AsyncEngine
from .chat_completions import ChatRun
from .completions import CompletionRun
from .errors import APIError, field_path
from .protocol import ChatCompletionRequest, CompletionRequest
from .state import ServerState

log = logging.getLogger("llmp.serve")
DRAIN_TIMEOUT_S = 600.0


class ClosingStreamingResponse(StreamingResponse):
    """A streaming response that always closes its generator and its engine requests (`on_close`), so a client that
    hangs up aborts its request at once, whether the stream was cancelled mid-way or before its first byte."""

    def __init__(self, content, on_close: Callable[[], None], **kwargs: Any):
        super().__init__(content, **kwargs)
        self.on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()
            self.on_close()


class Guard:
    """Pure ASGI checks before any route runs: the API key (401) on `/v1`, and the body size (413), by its
    Content-Length or, when streamed without one, as it arrives. (Pure ASGI rather than `@app.middleware`, which
    would buffer streamed responses and hide client disconnects.)"""

    def __init__(self, app, state: ServerState):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if scope["path"].startswith("/v1") and not _authorized(self.state, headers.get(b"authorization", b"")):
            error = APIError(
                401, "missing or wrong API key: send 'Authorization: Bearer <key>'", code="invalid_api_key"
            )
            return await error.response()(scope, receive, send)
        limit = self.state.limits.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await _too_large(limit)(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await _too_large(limit)(scope, receive, send)


def _too_large(limit: int) -> Response:
    return APIError(413, f"the request body is larger than this server's limit of {limit} bytes").response()


class _TooLarge(Exception):
    pass


def _authorized(state: ServerState, header: bytes) -> bool:
    if not state.api_keys:
        return True
    scheme, _, token = header.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return any(hmac.compare_digest(token.strip().encode(), key.encode()) for key in state.api_keys)


async def _until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_client_leaves(request: Request, work) -> Any:
    """Await `work`, but cancel it (which aborts its engine requests) if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_until_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        return Response(status_code=499)  # nginx's "client closed request": nobody reads it
    return task.result()


def create_app(state: ServerState, load_engine: Callable[[], Any]) -> FastAPI:
    """The server over `state`; `load_engine()` (run in a thread at start-up) returns the `LLMEngine` to serve."""

    def load() -> None:
        try:
            engine = AsyncEngine(load_engine(), state.metrics, max_pending=state.limits.max_pending)
            engine.start()
            state.engine = engine
            log.info("model %s loaded; ready", state.model_name)
        except BaseException as error:  # reported by /health and every request, not lost in a thread
            state.load_error = error
            log.exception("loading the model failed")

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ARG001  # FastAPI lifespan(app)
        state.created = int(time.time())
        threading.Thread(target=load, name="load-model", daemon=True).start()
        yield
        # uvicorn has stopped accepting and waited for open requests; let the engine finish what it still holds
        if state.engine is not None:
            state.engine.drain()
            await state.engine.wait_stopped(DRAIN_TIMEOUT_S)

    app = FastAPI(title="llm-platform OpenAI-compatible server", lifespan=lifespan)

    app.add_middleware(Guard, state=state)

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError):  # noqa: ARG001  # FastAPI exception handler (request, error)
        return error.response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception):  # noqa: ARG001  # FastAPI exception handler (request, error)
        log.exception("request failed")
        return APIError(500, f"internal error: {type(error).__name__}", code="internal_error").response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):  # noqa: ARG001  # FastAPI exception handler (request, error)
        problems = error.errors()
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        path = field_path(tuple(first.get("loc", ())))
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        message = f"{path}: {first.get('msg')}{more}" if path else f"{first.get('msg')}{more}"
        return APIError(400, message, param=path or None).response()

    @app.get("/health")
    async def health():
        if state.ready:
            return {"status": "ok", "model": state.model_name}
        why = f"failed: {state.load_error}" if state.load_error else "loading"
        if state.engine is not None and state.engine.error is not None:
            why = f"engine stopped: {state.engine.error}"
        return JSONResponse({"status": why}, status_code=503)

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models():
        context = state.engine.engine.max_model_len if state.engine else None

        def card(name: str, parent: str | None) -> dict[str, Any]:
            return {
                "id": name,
                "object": "model",
                "created": state.created,
                "owned_by": "llm-platform",
                "root": name,
                "parent": parent,
                "max_model_len": context,
            }

        base = card(state.model_name, None)
        return {"object": "list", "data": [base, *(card(a, state.model_name) for a in state.adapters)]}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        run = CompletionRun(state, body)
        if body.stream:
            return ClosingStreamingResponse(run.stream(), run.close, media_type="text/event-stream")
        return await _unless_client_leaves(request, run.response())

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        run = ChatRun(state, body)
        if body.stream:
            return ClosingStreamingResponse(run.stream(), run.close, media_type="text/event-stream")
        return await _unless_client_leaves(request, run.response())

    return app
