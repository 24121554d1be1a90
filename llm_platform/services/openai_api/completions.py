"""`POST /v1/completions`: text (or token ids) in, n continuations per prompt out, whole or streamed."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from . import generation
from .errors import APIError, invalid
from .formatting import completion_logprobs, sse, stream_chunk, usage
from .output_gate import OutputGate
from .prompts import completion_prompts
from .protocol import CompletionRequest
from .state import ServerState

FINISH_BLOCKED = "content_filter"


class CompletionRun:
    """One completions request in flight: its prompts, engine streams and the bookkeeping to format them."""

    def __init__(self, state: ServerState, request: CompletionRequest):
        if request.echo and request.logprobs is not None:
            raise invalid("echo with logprobs is not supported (prompt log-probabilities are not computed)", "echo")
        self.state, self.request = state, request
        adapter = state.adapter_for(request.model)
        tokenizer = state.tokenizer
        self.prompts = completion_prompts(request, tokenizer)
        if isinstance(request.prompt, str) or (request.prompt and isinstance(request.prompt[0], str)):
            texts = [request.prompt] if isinstance(request.prompt, str) else list(request.prompt)
        else:
            texts = [tokenizer.decode(ids, skip_special=True) for ids in self.prompts]
        generation.check_input(state, texts)
        params = generation.sampling_params(
            state, request, [len(p) for p in self.prompts], request.max_tokens, request.logprobs
        )
        self.id = f"cmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.streams = generation.start(state, self.prompts, params, adapter, self.id)
        self.echo = [text if request.echo else "" for text in texts]

    def close(self) -> None:
        """Abort whatever of this request is still running (a no-op once it has finished)."""
        for stream in self.streams:
            stream.close()

    def _index(self, prompt_index: int, choice_index: int) -> int:
        return prompt_index * self.request.n + choice_index

    def _logprobs(self, entries: list | None, offset: int) -> dict | None:
        if self.request.logprobs is None or entries is None:
            return None
        return completion_logprobs(self.state.tokenizer, entries, self.request.logprobs, offset)

    async def response(self) -> dict[str, Any]:
        last: dict[int, Any] = {}
        async for index, snapshot in generation.outputs(self.streams):
            last[index] = snapshot
        choices, completion_tokens = [], 0
        for p, snapshot in sorted(last.items()):
            for out in snapshot.outputs:
                completion_tokens += len(out.token_ids)
                text, blocked = OutputGate(self.state.content_filter).final(out.text)
                choices.append(
                    {
                        "index": self._index(p, out.index),
                        "text": self.echo[p] + text,
                        "logprobs": None if blocked else self._logprobs(out.logprobs, len(self.echo[p])),
                        "finish_reason": FINISH_BLOCKED if blocked else out.finish_reason,
                        "stop_reason": out.stop_reason,
                    }
                )
        choices.sort(key=lambda c: c["index"])
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.request.model,
            "choices": choices,
            "usage": usage(sum(len(p) for p in self.prompts), completion_tokens),
        }

    def _chunk(self, choices: list[dict[str, Any]], with_usage: bool) -> dict[str, Any]:
        return stream_chunk(self.id, "text_completion", self.created, self.request.model, choices, with_usage)

    async def stream(self) -> AsyncIterator[str]:
        options = self.request.stream_options
        with_usage = bool(options and options.include_usage)
        gates: dict[int, OutputGate] = {}
        logprobs_sent: dict[int, int] = {}
        tokens: dict[int, int] = {}
        if self.request.echo:
            for p, text in enumerate(self.echo):
                for j in range(self.request.n):
                    choice = {"index": self._index(p, j), "text": text, "logprobs": None, "finish_reason": None}
                    yield sse(self._chunk([choice], with_usage))
        try:
            async for p, snapshot in generation.outputs(self.streams):
                for out in snapshot.outputs:
                    index = self._index(p, out.index)
                    gate = gates.setdefault(index, OutputGate(self.state.content_filter))
                    if gate.blocked:
                        continue
                    tokens[index] = len(out.token_ids)
                    start = gate.sent
                    piece = gate.release(out.text, out.finish_reason is not None)
                    finish = FINISH_BLOCKED if gate.blocked else out.finish_reason
                    entries = None
                    if out.logprobs is not None and self.request.logprobs is not None:
                        entries = out.logprobs[logprobs_sent.get(index, 0) :]
                        logprobs_sent[index] = len(out.logprobs)
                    if not piece and finish is None and not entries:
                        continue
                    choice = {
                        "index": index,
                        "text": self.state.content_filter.refusal if gate.blocked else piece,
                        "logprobs": self._logprobs(entries, len(self.echo[p]) + start),
                        "finish_reason": finish,
                    }
                    yield sse(self._chunk([choice], with_usage))
                    if gate.blocked and self.request.n == 1:
                        self.streams[p].close()  # nothing more of it will be shown: free its slot
        except APIError as error:
            yield sse(error.body())
        if with_usage:
            final = self._chunk([], False)
            final["usage"] = usage(sum(len(p) for p in self.prompts), sum(tokens.values()))
            yield sse(final)
        yield sse("[DONE]")
