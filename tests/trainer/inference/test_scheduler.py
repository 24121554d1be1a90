"""The scheduler alone (no model): token budget per step, decodes first, chunked prefill, first-come-first-served
admission, preemption of the newest, and every request finishing (no starvation)."""

from __future__ import annotations

from llm_platform.trainer.inference import SamplingParams
from llm_platform.trainer.inference.paged_cache import PagedKVCache
from llm_platform.trainer.inference.scheduler import Scheduler
from llm_platform.trainer.inference.sequence import Sequence
from llm_platform.trainer.model import get_config


def _setup(num_blocks: int, budget: int, max_seqs: int = 8):
    cache = PagedKVCache(
        get_config("llama-tiny"),
        num_blocks=num_blocks,
        block_size=4,
        max_num_seqs=max_seqs,
        max_step_tokens=budget,
        enable_prefix_caching=False,
    )
    return cache, Scheduler(cache, max_num_seqs=max_seqs, max_num_batched_tokens=budget)


def _seq(cache, i: int, prompt_len: int, max_tokens: int) -> Sequence:
    params = SamplingParams(max_tokens=max_tokens, temperature=0)
    return Sequence(i, str(i), 0, [1] * prompt_len, params, None, float(i), cache.new_sequence())


def _run(scheduler: Scheduler, seqs: list[Sequence]) -> tuple[list, list[str]]:
    """Steps until done as the engine would (computed tokens advance, sampling rows get a token); returns each
    step's plan and the order requests finished in."""
    plans, finished = [], []
    while scheduler.has_unfinished():
        plan = scheduler.schedule()
        assert plan.scheduled, "a step with work left must schedule something"
        plans.append(plan)
        for item in plan.scheduled:
            samples = item.samples
            item.seq.num_computed += item.num_tokens
            if samples:
                item.seq.output_ids.append(7)
                if len(item.seq.output_ids) == item.seq.params.max_tokens:
                    scheduler.remove(item.seq)
                    finished.append(item.seq.request_id)
    return plans, finished


def test_budget_decodes_first_and_chunked_prefill():
    cache, scheduler = _setup(num_blocks=200, budget=10)
    seqs = [_seq(cache, 0, 3, 6), _seq(cache, 1, 25, 3), _seq(cache, 2, 4, 2)]
    for s in seqs:
        scheduler.add(s)
    plans, _ = _run(scheduler, seqs)
    for plan in plans:
        assert plan.num_tokens <= 10
    first, second = plans[0], plans[1]
    assert [(s.seq.request_id, s.num_tokens) for s in first.scheduled] == [("0", 3), ("1", 7)]
    # next step: request 0 decodes one token first, request 1 continues its prompt with the rest of the budget
    assert [(s.seq.request_id, s.num_tokens) for s in second.scheduled] == [("0", 1), ("1", 9)]
    assert not second.scheduled[1].samples  # mid-prompt chunks draw no token


def test_first_come_first_served_and_nobody_starves():
    cache, scheduler = _setup(num_blocks=200, budget=16, max_seqs=2)
    seqs = [_seq(cache, i, 5, 4) for i in range(6)]
    for s in seqs:
        scheduler.add(s)
    _, finished = _run(scheduler, seqs)
    assert finished == [str(i) for i in range(6)]


def test_out_of_blocks_preempts_the_newest_and_everything_still_finishes():
    cache, scheduler = _setup(num_blocks=9, budget=64)  # 8 usable blocks of 4 tokens
    seqs = [_seq(cache, i, 6, 10) for i in range(3)]  # 16 tokens = 4 blocks each at the end
    for s in seqs:
        scheduler.add(s)
    plans, finished = _run(scheduler, seqs)
    preempted = [s.request_id for plan in plans for s in plan.preempted]
    assert preempted and "0" not in preempted  # the oldest request is never the one pushed back
    assert sorted(finished) == ["0", "1", "2"] and finished[0] == "0"
    assert cache.usage()[0] == 0
