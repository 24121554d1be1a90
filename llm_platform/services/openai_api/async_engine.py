"""`AsyncEngine`: the synchronous `LLMEngine` driven by one background thread, its outputs fanned out to asyncio.

The engine is not thread-safe and every `step()` is one forward over the whole batch, so exactly one thread calls
it. Request handlers never touch the engine: they post commands (add, abort) that the thread applies between two
steps, and read their request's outputs from their own asyncio queue (the engine builds fresh `RequestOutput`s each
step, so they cross threads without a copy). A request whose client went away is aborted before the next step, so
its slot is free one step later. `drain()` stops admitting and lets the thread run until the requests in flight are
finished (graceful shutdown).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from llm_platform.observability.serving import ServingMetrics


class QueueFull(Exception):
    """More requests in flight than the server admits; the client should retry later (HTTP 429)."""


class ShuttingDown(Exception):
    """The server is draining for shutdown and takes no new requests (HTTP 503)."""


@dataclass
class _Tracked:
    """One request as the engine thread follows it: where its outputs go, and its timing for the metrics."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    arrival: float
    last_token: float | None = None
    tokens: int = 0


@dataclass
class _Command:
    kind: str  # "add" | "abort"
    request_id: str
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


_END = object()


def _put_all(items: list[tuple[asyncio.Queue, Any]]) -> None:
    for queue, item in items:
        queue.put_nowait(item)


class RequestStream:
    """The outputs of one admitted request, read with `await next()` (None once it has ended). `close()` before the
    end aborts it in the engine: a client that went away frees its slot before the next step."""

    def __init__(self, engine: AsyncEngine, request_id: str, queue: asyncio.Queue):
        self.engine, self.request_id, self._queue = engine, request_id, queue
        self.done = False

    async def next(self) -> Any | None:
        if self.done:
            return None
        item = await self._queue.get()
        if item is _END:
            self.done = True
            return None
        if isinstance(item, BaseException):
            self.done = True
            raise item
        self.done = item.finished
        return item

    def close(self) -> None:
        if not self.done:
            self.done = True
            self.engine.abort(self.request_id)


class AsyncEngine:
    """Admit at most `max_pending` requests at once (running or waiting); more raise `QueueFull`."""

    def __init__(self, engine: Any, metrics: ServingMetrics, *, max_pending: int = 256) -> None:
        self.engine = engine
        self.metrics = metrics
        self.max_pending = max_pending
        self._tracked: dict[str, _Tracked] = {}
        self._commands: list[_Command] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._draining = False
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="engine-loop", daemon=True)

    # ---- the asyncio side -------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    @property
    def pending(self) -> int:
        return len(self._tracked)

    @property
    def error(self) -> BaseException | None:
        """What stopped the engine thread, if it died."""
        return self._error

    def submit(self, requests: list[tuple[str, list[int], Any, str | None]]) -> list[RequestStream]:
        """Admit (request id, prompt ids, params, adapter) records all together or none (`QueueFull`), so a
        request of several prompts is never half queued."""
        if self._draining:
            raise ShuttingDown("the server is shutting down; retry on another replica")
        if self._error is not None:
            raise RuntimeError(f"the engine stopped: {self._error!r}")
        loop = asyncio.get_running_loop()
        streams = []
        with self._lock:
            if len(self._tracked) + len(requests) > self.max_pending:
                raise QueueFull(
                    f"{len(self._tracked)} requests in flight, the limit is {self.max_pending}; retry later"
                )
            for request_id, prompt, params, adapter in requests:
                queue: asyncio.Queue = asyncio.Queue()
                self._tracked[request_id] = _Tracked(loop, queue, time.monotonic())
                self._commands.append(_Command("add", request_id, (prompt, params), {"adapter": adapter}))
                streams.append(RequestStream(self, request_id, queue))
        self._wake.set()
        return streams

    def abort(self, request_id: str) -> None:
        self._post(_Command("abort", request_id))

    def drain(self) -> None:
        """Refuse new requests from now on; the thread exits once the requests in flight have finished."""
        self._draining = True
        self._wake.set()

    async def wait_stopped(self, timeout: float | None = None) -> bool:
        return await asyncio.to_thread(self._stopped.wait, timeout)

    def _post(self, command: _Command) -> None:
        with self._lock:
            self._commands.append(command)
        self._wake.set()

    # ---- the engine thread ------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                self._apply_commands()
                busy = self.engine.has_unfinished_requests()
                if busy:
                    self._deliver(self.engine.step())
                self._update_gauges()
                if not busy:
                    if self._draining and not self._tracked:
                        return
                    self._wake.wait(0.05)
                    self._wake.clear()
        except BaseException as error:  # the engine failed: every waiting client gets the error, not a hang
            self._error = error
            with self._lock:
                tracked, self._tracked = self._tracked, {}
            for item in tracked.values():
                item.loop.call_soon_threadsafe(item.queue.put_nowait, RuntimeError(f"the engine failed: {error!r}"))
        finally:
            self._stopped.set()

    def _apply_commands(self) -> None:
        with self._lock:
            commands, self._commands = self._commands, []
        for command in commands:
            tracked = self._tracked.get(command.request_id)
            if command.kind == "add":
                try:
                    self.engine.add_request(command.request_id, *command.args, **command.kwargs)
                except Exception as error:  # an invalid request: its client gets the error
                    self._forget(command.request_id)
                    if tracked is not None:
                        tracked.loop.call_soon_threadsafe(tracked.queue.put_nowait, error)
            elif tracked is not None:
                self.engine.abort_request(command.request_id)
                self._forget(command.request_id)
                self.metrics.finished("abort")
                tracked.loop.call_soon_threadsafe(tracked.queue.put_nowait, _END)

    def _forget(self, request_id: str) -> None:
        with self._lock:
            self._tracked.pop(request_id, None)

    def _deliver(self, outputs: list[Any]) -> None:
        """Hand a step's outputs to their queues with one wake-up of each event loop per step (not one per request:
        with a full batch that is the difference between one and hundreds of cross-thread calls per token)."""
        now = time.monotonic()
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue, Any]]] = {}
        for output in outputs:
            tracked = self._tracked.get(output.request_id)
            if tracked is None:  # aborted while this step ran
                continue
            self._observe(tracked, output, now)
            if output.finished:
                self._forget(output.request_id)
            by_loop.setdefault(tracked.loop, []).append((tracked.queue, output))
        for loop, items in by_loop.items():
            loop.call_soon_threadsafe(_put_all, items)

    def _observe(self, tracked: _Tracked, output: Any, now: float) -> None:
        m = self.metrics
        tokens = sum(len(o.token_ids) for o in output.outputs)
        new = tokens - tracked.tokens
        if new > 0:
            if tracked.last_token is None:
                m.ttft.observe(now - tracked.arrival)
                m.prompt_tokens.inc(len(output.prompt_token_ids))
                new_after_first = new - 1
            else:
                new_after_first = new
            if tracked.last_token is not None:
                # the n sequences of a request advance side by side; more tokens per sequence (speculative
                # decoding) share the step's time
                per_sequence = max(1, new_after_first // max(1, len(output.outputs)))
                for _ in range(new_after_first):
                    m.inter_token.observe((now - tracked.last_token) / per_sequence)
            m.generation_tokens.inc(new)
            tracked.tokens, tracked.last_token = tokens, now
        if output.finished:
            if tracked.last_token is None:  # finished without a token (e.g. max_tokens reached by the prompt)
                m.prompt_tokens.inc(len(output.prompt_token_ids))
            m.e2e.observe(now - tracked.arrival)
            reasons = {o.finish_reason or "stop" for o in output.outputs}
            m.finished("length" if "length" in reasons else sorted(reasons)[0])

    def _update_gauges(self) -> None:
        stats = self.engine.stats()
        self.metrics.running.set(stats.num_running)
        self.metrics.waiting.set(stats.num_waiting)
        self.metrics.kv_cache_usage.set(stats.kv_cache_usage)
