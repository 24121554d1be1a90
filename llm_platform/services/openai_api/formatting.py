"""Engine outputs as OpenAI JSON: log-probabilities in both endpoints' shapes, usage, SSE lines. Pure functions."""

from __future__ import annotations

import json
from typing import Any

from llm_platform.trainer.tokenizer import Tokenizer


def sse(payload: dict[str, Any] | str) -> str:
    """One server-sent event: `data: <json>` and a blank line (`data: [DONE]` ends the stream)."""
    body = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"data: {body}\n\n"


def token_text(tokenizer: Tokenizer, token_id: int) -> str:
    return tokenizer.decode([token_id])


def chat_logprobs(tokenizer: Tokenizer, entries: list[Any], top: int) -> dict[str, Any]:
    """`choices[i].logprobs` of chat completions: one record per generated token with its `top` alternatives."""

    def item(token_id: int, logprob: float) -> dict[str, Any]:
        text = token_text(tokenizer, token_id)
        return {"token": text, "logprob": _finite(logprob), "bytes": list(text.encode("utf-8"))}

    return {
        "content": [
            {**item(e.token_id, e.logprob), "top_logprobs": [item(t, lp) for t, lp in e.top[:top]]} for e in entries
        ]
    }


def completion_logprobs(tokenizer: Tokenizer, entries: list[Any], top: int, offset: int) -> dict[str, Any]:
    """`choices[i].logprobs` of completions: parallel lists, and the character offset of each token's text."""
    tokens, offsets, tops = [], [], []
    for e in entries:
        text = token_text(tokenizer, e.token_id)
        tokens.append(text)
        offsets.append(offset)
        offset += len(text)
        alternatives: dict[str, float] = {}
        for token_id, logprob in e.top[:top]:
            alternatives.setdefault(token_text(tokenizer, token_id), _finite(logprob))
        tops.append(alternatives)
    return {
        "tokens": tokens,
        "token_logprobs": [_finite(e.logprob) for e in entries],
        "top_logprobs": tops,
        "text_offset": offsets,
    }


def _finite(value: float) -> float:
    """JSON has no -inf; OpenAI's clients expect a number: the lowest float stands in for a zero probability."""
    return max(float(value), -9999.0)


def stream_chunk(
    request_id: str, kind: str, created: int, model: str, choices: list[dict[str, Any]], with_usage: bool
) -> dict[str, Any]:
    """One streamed chunk of a completion (`kind` text_completion) or chat completion (chat.completion.chunk); with
    `stream_options.include_usage`, every chunk but the last carries `usage: null`, as OpenAI's do."""
    chunk = {"id": request_id, "object": kind, "created": created, "model": model, "choices": choices}
    if with_usage:
        chunk["usage"] = None
    return chunk


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
