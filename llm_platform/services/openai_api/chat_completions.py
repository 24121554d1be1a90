"""`POST /v1/chat/completions`: messages through the chat template, n answers, tool calls checked, whole or streamed.

With tools offered, a streamed answer is held until it is complete: only then can it be told apart as a call (sent
as one `tool_calls` delta, arguments validated) or text (sent as one content delta).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from . import generation
from . import tools as tool_calls
from .errors import APIError
from .formatting import chat_logprobs, sse, stream_chunk, usage
from .output_gate import OutputGate
from .prompts import chat_prompt
from .protocol import ChatCompletionRequest
from .state import ServerState

FINISH_BLOCKED = "content_filter"
FINISH_TOOL_ERROR = "tool_call_error"


class ChatRun:
    """One chat request in flight."""

    def __init__(self, state: ServerState, request: ChatCompletionRequest):
        self.state, self.request = state, request
        adapter = state.adapter_for(request.model)
        self.tools = tool_calls.active_tools(request)
        generation.check_input(state, [m.text() for m in request.messages])
        self.prompt, self.prefix = chat_prompt(request, state.tokenizer, self.tools)
        top = request.top_logprobs or 0
        params = generation.sampling_params(
            state, request, [len(self.prompt)], request.wanted_tokens, top if request.logprobs else None
        )
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        (self.stream_,) = generation.start(state, [self.prompt], params, adapter, self.id)

    def close(self) -> None:
        """Abort the request if it is still running (a no-op once it has finished)."""
        self.stream_.close()

    def _logprobs(self, entries: list | None) -> dict | None:
        if not self.request.logprobs or entries is None:
            return None
        return chat_logprobs(self.state.tokenizer, entries, self.request.top_logprobs or 0)

    def _message(self, text: str, finish: str | None) -> tuple[dict[str, Any], str | None, str | None]:
        """(message, finish reason, tool-call error) for a finished answer's text."""
        if not self.tools:
            return {"role": "assistant", "content": text}, finish, None
        parsed = tool_calls.parse_calls(self.prefix + text, self.tools, self.request.tool_choice)
        if parsed.error:
            return {"role": "assistant", "content": text}, FINISH_TOOL_ERROR, parsed.error
        if not parsed.calls:
            return {"role": "assistant", "content": parsed.content or ""}, finish, None
        calls = [
            {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function", "function": {"name": n, "arguments": a}}
            for n, a in parsed.calls
        ]
        return {"role": "assistant", "content": parsed.content, "tool_calls": calls}, "tool_calls", None

    async def response(self) -> dict[str, Any]:
        last = None
        async for _, snapshot in generation.outputs([self.stream_]):
            last = snapshot
        choices = []
        for out in last.outputs:
            text, blocked = OutputGate(self.state.content_filter).final(out.text)
            if blocked:
                message, finish, error = {"role": "assistant", "content": text}, FINISH_BLOCKED, None
            else:
                message, finish, error = self._message(out.text, out.finish_reason)
            choice = {
                "index": out.index,
                "message": message,
                "logprobs": None if blocked else self._logprobs(out.logprobs),
                "finish_reason": finish,
                "stop_reason": out.stop_reason,
            }
            if error:
                choice["tool_call_error"] = error
            choices.append(choice)
        choices.sort(key=lambda c: c["index"])
        completion_tokens = sum(len(o.token_ids) for o in last.outputs)
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.request.model,
            "choices": choices,
            "usage": usage(len(self.prompt), completion_tokens),
        }

    def _chunk(self, choices: list[dict[str, Any]], with_usage: bool) -> dict[str, Any]:
        return stream_chunk(self.id, "chat.completion.chunk", self.created, self.request.model, choices, with_usage)

    async def stream(self) -> AsyncIterator[str]:
        options = self.request.stream_options
        with_usage = bool(options and options.include_usage)
        n = self.request.n
        for index in range(n):
            first = {"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None}
            yield sse(self._chunk([{**first, "finish_reason": None}], with_usage))
        gates = {i: OutputGate(self.state.content_filter) for i in range(n)}
        logprobs_sent = dict.fromkeys(range(n), 0)
        tokens = dict.fromkeys(range(n), 0)
        try:
            async for _, snapshot in generation.outputs([self.stream_]):
                for out in snapshot.outputs:
                    choice = self._delta(out, gates[out.index], logprobs_sent)
                    tokens[out.index] = len(out.token_ids)
                    if choice is not None:
                        yield sse(self._chunk([choice], with_usage))
                        if choice["finish_reason"] == FINISH_BLOCKED and n == 1:
                            self.stream_.close()  # nothing more of it will be shown: free its slot
        except APIError as error:
            yield sse(error.body())
        if with_usage:
            final = self._chunk([], False)
            final["usage"] = usage(len(self.prompt), sum(tokens.values()))
            yield sse(final)
        yield sse("[DONE]")

    def _delta(self, out: Any, gate: OutputGate, logprobs_sent: dict[int, int]) -> dict[str, Any] | None:
        """The chunk choice for one advanced completion, or None when there is nothing to send yet."""
        if gate.blocked:
            return None
        finished = out.finish_reason is not None
        entries = None
        if out.logprobs is not None and self.request.logprobs:
            entries = out.logprobs[logprobs_sent[out.index] :]
            logprobs_sent[out.index] = len(out.logprobs)
        if self.tools:  # held to the end: a call or text, decided on the whole answer
            if not finished:
                return None
            text, blocked = gate.final(out.text)
            if blocked:
                delta, finish, error = {"content": text}, FINISH_BLOCKED, None
            else:
                message, finish, error = self._message(out.text, out.finish_reason)
                delta = {k: v for k, v in message.items() if k != "role" and v is not None}
                for i, call in enumerate(delta.get("tool_calls", [])):
                    call["index"] = i
            choice = {
                "index": out.index,
                "delta": delta,
                "logprobs": self._logprobs(out.logprobs),
                "finish_reason": finish,
            }
            if error:
                choice["tool_call_error"] = error
            return choice
        piece = gate.release(out.text, finished)
        if gate.blocked:
            refusal = self.state.content_filter.refusal
            return {
                "index": out.index,
                "delta": {"content": refusal},
                "logprobs": None,
                "finish_reason": FINISH_BLOCKED,
            }
        if not piece and not finished and not entries:
            return None
        return {
            "index": out.index,
            "delta": {"content": piece} if piece else {},
            "logprobs": self._logprobs(entries),
            "finish_reason": out.finish_reason,
        }
