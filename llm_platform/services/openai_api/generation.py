"""From a validated request to engine requests and back: sampling parameters, admission, merged output streams.

Shared by both endpoints: `sampling_params` maps the OpenAI fields onto the engine's `SamplingParams` (checking
them against the server's limits and the model's context), `start` admits one engine request per prompt, and
`outputs` yields every request's snapshots as they come, in one stream.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

from .async_engine import QueueFull, RequestStream, ShuttingDown
from .errors import APIError, invalid
from .protocol import SamplingFields
from .state import ServerState


def sampling_params(
    state: ServerState,
    request: SamplingFields,
    prompt_lengths: list[int],
    max_tokens: int | None,
    logprobs: int | None,
) -> Any:
    """The engine's `SamplingParams` for `request`; `max_tokens` None means: as many as the context leaves."""
    from llm_platform.trainer.inference.params import InvalidRequest, SamplingParams

    engine = state.require_engine().engine
    limit, context = state.limits.max_tokens, engine.max_model_len
    if max_tokens is not None and max_tokens > limit:
        raise invalid(f"max_tokens is {max_tokens}, but this server allows at most {limit}", "max_tokens")
    longest = max(prompt_lengths)
    if longest >= context:
        raise invalid(
            f"This model's maximum context length is {context} tokens, and the prompt has {longest}; shorten it",
            "messages" if hasattr(request, "messages") else "prompt",
            "context_length_exceeded",
        )
    wanted = max_tokens if max_tokens is not None else min(limit, context - longest)
    if longest + wanted > context:
        raise invalid(
            f"This model's maximum context length is {context} tokens. However, you requested {longest + wanted} "
            f"tokens ({longest} in the prompt, {wanted} for the completion); lower max_tokens",
            "max_tokens",
            "context_length_exceeded",
        )
    params = SamplingParams(
        max_tokens=wanted,
        temperature=request.temperature,
        top_k=max(request.top_k, 0),  # vLLM spells "off" as -1, the engine as 0
        top_p=request.top_p,
        min_p=request.min_p,
        repetition_penalty=request.repetition_penalty,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        no_repeat_ngram_size=request.no_repeat_ngram_size,
        stop=tuple(request.stop),
        stop_token_ids=tuple(request.stop_token_ids or ()),
        ignore_eos=request.ignore_eos,
        seed=request.seed,
        logprobs=logprobs,
        n=request.n,
    )
    try:
        params.validate(engine.tokenizer.vocab_size)
    except InvalidRequest as error:
        raise invalid(error.message, error.field) from None
    return params


def start(
    state: ServerState, prompts: list[list[int]], params: Any, adapter: str | None, prefix: str
) -> list[RequestStream]:
    """Admit one engine request per prompt, all or none; 429 past the queue bound, 503 while shutting down."""
    engine = state.require_engine()
    requests = [(f"{prefix}-{uuid.uuid4().hex}", ids, params, adapter) for ids in prompts]
    try:
        return engine.submit(requests)
    except QueueFull as error:
        state.metrics.refused("queue_full")
        raise APIError(429, f"the server is at capacity: {error}", code="queue_full") from None
    except ShuttingDown as error:
        raise APIError(503, str(error), code="shutting_down") from None


async def outputs(streams: list[RequestStream]) -> AsyncIterator[tuple[int, Any]]:
    """(prompt index, snapshot) from every stream as they arrive; closing the iterator aborts what is unfinished."""
    merged: asyncio.Queue = asyncio.Queue()

    async def pump(index: int, stream: RequestStream) -> None:
        try:
            while (item := await stream.next()) is not None:
                await merged.put((index, item))
            await merged.put((index, None))
        except Exception as error:  # the engine refused or failed this request: the client hears why
            await merged.put((index, error))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            index, item = await merged.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, Exception):
                raise _as_api_error(item)
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        for stream in streams:
            stream.close()


def _as_api_error(error: Exception) -> APIError:
    from llm_platform.trainer.inference.params import InvalidRequest

    if isinstance(error, APIError):
        return error
    if isinstance(error, InvalidRequest):
        return invalid(error.message, error.field)
    return APIError(500, f"generation failed: {error}", code="engine_error")


def check_input(state: ServerState, texts: list[str]) -> None:
    """The content filter on the prompt: a blocked input is refused before it reaches the model (400, as Azure
    OpenAI answers with code `content_filter`)."""
    verdict = state.content_filter.check("\n".join(texts), "input")
    if verdict.blocked:
        raise APIError(400, state.content_filter.refusal, param="messages", code="content_filter")
