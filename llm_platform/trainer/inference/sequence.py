"""The engine's record of one sequence in flight: tokens, cache state, and what it has emitted so far."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch

from .outputs import TokenLogprob
from .paged_cache import SequenceBlocks
from .params import SamplingParams


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass
class Sequence:
    """One completion of a request (a request with n > 1 has n sequences sharing its prompt).

    num_computed: tokens whose keys and values the cache holds; the tokens after them are computed by the next
    steps (the whole prompt at first, one token per step when decoding, everything again after a preemption).
    """

    seq_id: int
    request_id: str
    index: int
    prompt_ids: list[int]
    params: SamplingParams
    adapter: str | None
    arrival_time: float
    blocks: SequenceBlocks
    generator: torch.Generator | None = None
    output_ids: list[int] = field(default_factory=list)
    num_computed: int = 0
    status: Status = Status.WAITING
    logprobs: list[TokenLogprob] | None = None
    cumulative_logprob: float = 0.0
    text: str = ""
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    first_token_time: float | None = None
    finished_time: float | None = None

    @property
    def tokens(self) -> list[int]:
        return self.prompt_ids + self.output_ids

    def token_slice(self, start: int, end: int) -> list[int]:
        """tokens[start:end] without building the whole list (a decode step reads one token)."""
        split = len(self.prompt_ids)
        if start >= split:
            return self.output_ids[start - split : end - split]
        return self.prompt_ids[start:end] + self.output_ids[: max(0, end - split)]

    def tokens_tail(self) -> int:
        """The last token (what a decode step computes)."""
        return self.output_ids[-1] if self.output_ids else self.prompt_ids[-1]

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def finished(self) -> bool:
        return self.status is Status.FINISHED
