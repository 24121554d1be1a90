"""Deciding which sequences run in the next step, and how many of their tokens: continuous batching under a token
budget, chunked prefill mixed with decode, first-come-first-served, preemption by recompute.

Every step the running sequences go first (oldest first), each asking for the tokens it has not computed (one when
decoding, the rest of its prompt when prefilling, cut to the budget left); then waiting sequences join in arrival
order while budget, sequence slots and cache blocks last. Nobody overtakes: a waiting sequence that does not fit
stops admission for this step. When the cache cannot hold a running sequence's next tokens, the newest running
sequence is preempted (its blocks freed; it goes back to the front of the queue and recomputes its tokens later),
so the oldest requests always progress and none starves.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .paged_cache import PagedKVCache
from .sequence import Sequence, Status


@dataclass(frozen=True)
class ScheduledSequence:
    seq: Sequence
    num_tokens: int  # tokens computed this step, starting at seq.num_computed

    @property
    def samples(self) -> bool:
        """Whether this step reaches the sequence's last token, so a new token is drawn for it."""
        return self.seq.num_computed + self.num_tokens == self.seq.num_tokens


@dataclass
class SchedulerOutput:
    scheduled: list[ScheduledSequence] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)
    cache_full: list[Sequence] = field(default_factory=list)  # alone and still out of blocks: finished by length

    @property
    def num_tokens(self) -> int:
        return sum(s.num_tokens for s in self.scheduled)


class Scheduler:
    def __init__(self, cache: PagedKVCache, *, max_num_seqs: int, max_num_batched_tokens: int) -> None:
        self.cache = cache
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0
        self.prefix_hit_tokens = 0

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def remove(self, seq: Sequence) -> None:
        """Takes a finished or aborted sequence out of the queues and frees its blocks."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.cache.free(seq.blocks)

    def _preempt(self, out: SchedulerOutput) -> Sequence:
        victim = self.running.pop()
        self.cache.free(victim.blocks)
        victim.num_computed = 0
        victim.status = Status.WAITING
        self.waiting.appendleft(victim)
        out.preempted.append(victim)
        self.num_preemptions += 1
        return victim

    def _sibling_prefilling(self, seq: Sequence) -> bool:
        """Whether another sample of the same request is still computing the prompt: waiting one step for it lets
        this one reuse the prompt's blocks instead of computing them again."""
        if not self.cache.prefix_caching or seq.index == 0:
            return False
        return any(s.request_id == seq.request_id and s.num_computed < len(s.prompt_ids) for s in self.running)

    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.max_num_batched_tokens
        index = 0
        while index < len(self.running) and budget > 0:
            seq = self.running[index]
            n = min(seq.num_tokens - seq.num_computed, budget)
            while not self.cache.can_allocate(seq.blocks, seq.num_computed, n):
                if len(self.running) == 1:  # alone and the pool cannot grow it: it ends here
                    self.running.pop()
                    self.cache.free(seq.blocks)
                    out.cache_full.append(seq)
                    break
                if self._preempt(out) is seq:
                    break
            if seq.status is not Status.RUNNING or seq in out.cache_full:
                break
            self.cache.allocate(seq.blocks, seq.num_computed, n)
            out.scheduled.append(ScheduledSequence(seq, n))
            budget -= n
            index += 1
        if out.preempted:
            return out
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            if self._sibling_prefilling(seq):
                break
            if seq.num_computed == 0:
                hit = self.cache.match_prefix(seq.blocks, seq.tokens, seq.adapter)
                seq.num_computed = hit
            n = min(seq.num_tokens - seq.num_computed, budget)
            if not self.cache.can_allocate(seq.blocks, seq.num_computed, n):
                self.cache.free(seq.blocks)
                seq.num_computed = 0
                break
            self.prefix_hit_tokens += seq.num_computed
            self.waiting.popleft()
            self.cache.allocate(seq.blocks, seq.num_computed, n)
            seq.status = Status.RUNNING
            self.running.append(seq)
            out.scheduled.append(ScheduledSequence(seq, n))
            budget -= n
        return out
