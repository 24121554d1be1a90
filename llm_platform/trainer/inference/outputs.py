"""What the engine hands back: per-request outputs after every step, and engine-wide statistics."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenLogprob:
    """The chosen token's log-probability and the ``top`` most likely (token id, log-probability) pairs."""

    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class CompletionOutput:
    """One completion of a request (``index`` < n). ``finish_reason``: "stop" (eos, stop id or stop string),
    "length" (max_tokens or the model's context) or "abort"; None while running. ``stop_reason`` is the stop string
    or stop token id that ended it (None for eos and length)."""

    index: int
    token_ids: list[int]
    text: str
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] | None = None
    stop_reason: str | int | None = None
    cumulative_logprob: float | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass
class RequestOutput:
    """A request's state after a step: cumulative tokens and text of each completion so far. Times are
    ``time.monotonic()`` seconds (first_token_time / finished_time None until then)."""

    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool
    arrival_time: float = 0.0
    first_token_time: float | None = None
    finished_time: float | None = None


@dataclass
class EngineStats:
    num_running: int
    num_waiting: int
    kv_blocks_used: int
    kv_blocks_total: int
    num_preemptions: int = 0
    prefix_cache_hit_tokens: int = 0

    @property
    def kv_cache_usage(self) -> float:
        return self.kv_blocks_used / self.kv_blocks_total if self.kv_blocks_total else 0.0
