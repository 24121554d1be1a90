"""The engine's batching machinery changes no output: paged equals static cache, a request's tokens under
continuous batching (chunked prefill, requests joining mid-flight, preemption, prefix sharing) equal running it
alone, and a seeded request samples the same tokens whoever shares its batch."""

from __future__ import annotations

import random

import pytest

from llm_platform.trainer.inference import EngineConfig, LLMEngine, SamplingParams
from llm_platform.trainer.inference.generate import generate

from .conftest import tiny_model

GREEDY = SamplingParams(max_tokens=14, temperature=0, ignore_eos=True)
PROMPTS = [[5, 17, 42, 7], list(range(1, 40)), [9] * 13, list(range(100, 121)), [300, 2, 301]]


def _alone(model, prompt, params=GREEDY) -> list[int]:
    engine = LLMEngine(model, None, EngineConfig(block_size=4, enable_prefix_caching=False))
    return engine.generate([prompt], params)[0].outputs[0].token_ids


@pytest.mark.parametrize(
    ("preset", "overrides"),
    [
        ("llama-tiny", {}),
        ("mistral-tiny", {"sliding_window": 8}),
        ("mistral-tiny", {"sliding_window": 8, "sliding_window_layers": [1]}),
        ("deepseek-tiny", {}),
        ("llama-tiny", {"position_encoding": "alibi"}),
    ],
    ids=["gqa", "sliding-window", "window-and-full-layers", "mla-moe", "alibi"],
)
def test_paged_cache_equals_static_cache(preset, overrides):
    model = tiny_model(preset, **overrides)
    engine = LLMEngine(model, None, EngineConfig(block_size=4, max_num_batched_tokens=16))
    outs = engine.generate(PROMPTS, GREEDY)
    for prompt, out in zip(PROMPTS, outs, strict=True):
        assert out.outputs[0].token_ids == generate(model, prompt, 14, temperature=0)


def test_sliding_window_layers_keep_only_their_window():
    model = tiny_model("mistral-tiny", sliding_window=8)
    engine = LLMEngine(model, None, EngineConfig(block_size=4))
    engine.add_request("long", list(range(1, 60)), SamplingParams(max_tokens=30, temperature=0, ignore_eos=True))
    engine.step()  # the prompt's prefill holds all its blocks for that one step
    while engine.has_unfinished_requests():
        engine.step()
        for seq in engine.scheduler.running:
            live = [b for b in seq.blocks.tables[0] if b != 0]
            assert len(live) <= 8 // 4 + 2  # the window's blocks plus the partial ones at both ends
            assert engine.stats().kv_blocks_used == len(live)


def test_requests_joining_mid_flight_equal_running_alone():
    model = tiny_model()
    expected = [_alone(model, p) for p in PROMPTS]
    engine = LLMEngine(model, None, EngineConfig(block_size=4, max_num_batched_tokens=12, max_num_seqs=3))
    finals = {}
    pending = list(enumerate(PROMPTS))
    while pending or engine.has_unfinished_requests():
        if pending:  # one new request every step, while others decode or prefill in chunks
            i, prompt = pending.pop(0)
            engine.add_request(str(i), prompt, GREEDY)
        for out in engine.step():
            if out.finished:
                finals[int(out.request_id)] = out.outputs[0].token_ids
    assert [finals[i] for i in range(len(PROMPTS))] == expected


def test_preemption_by_recompute_changes_no_output():
    model = tiny_model()
    expected = [_alone(model, p) for p in PROMPTS]
    # 15 blocks of 4 tokens cannot hold all five sequences (up to 53 tokens each): some get preempted
    engine = LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=15, enable_prefix_caching=False))
    outs = engine.generate(PROMPTS, GREEDY)
    assert engine.stats().num_preemptions > 0
    assert [o.outputs[0].token_ids for o in outs] == expected
    assert engine.stats().kv_blocks_used == 0


def test_prefix_sharing_changes_no_output():
    model = tiny_model()
    system = list(range(200, 237))  # 37 shared tokens: 9 full blocks of 4
    prompts = [system + [1, 2, 3], system + [4], system + [5, 6, 7, 8, 9, 10]]
    expected = [_alone(model, p) for p in prompts]
    engine = LLMEngine(model, None, EngineConfig(block_size=4))
    first = engine.generate(prompts[:1], GREEDY)
    rest = engine.generate(prompts[1:], GREEDY)
    assert engine.stats().prefix_cache_hit_tokens >= 2 * 36
    assert [o.outputs[0].token_ids for o in first + rest] == expected


def test_seeded_sampling_does_not_depend_on_the_batch():
    model = tiny_model()
    params = SamplingParams(max_tokens=10, temperature=1.0, top_p=0.9, seed=7, ignore_eos=True)
    alone = _alone(model, PROMPTS[1], params)
    engine = LLMEngine(model, None, EngineConfig(block_size=4, max_num_batched_tokens=8))
    others = [SamplingParams(max_tokens=6, temperature=0.7, ignore_eos=True)] * 3
    outs = engine.generate([PROMPTS[0], PROMPTS[1], PROMPTS[2], PROMPTS[3]], [others[0], params, *others[1:]])
    assert outs[1].outputs[0].token_ids == alone
    again = LLMEngine(model, None, EngineConfig(block_size=4)).generate([PROMPTS[1]], params)
    assert again[0].outputs[0].token_ids == alone


def test_n_samples_share_the_prompt_and_differ():
    model = tiny_model()
    engine = LLMEngine(model, None, EngineConfig(block_size=4))
    out = engine.generate([PROMPTS[1]], SamplingParams(max_tokens=8, temperature=1.5, n=3, seed=3))[0]
    assert [o.index for o in out.outputs] == [0, 1, 2]
    assert len({tuple(o.token_ids) for o in out.outputs}) > 1
    assert engine.stats().prefix_cache_hit_tokens > 0


def test_abort_ends_a_request_and_frees_its_blocks():
    engine = LLMEngine(tiny_model(), None, EngineConfig(block_size=4))
    engine.add_request("a", PROMPTS[1], SamplingParams(max_tokens=50, temperature=0))
    engine.add_request("b", PROMPTS[0], SamplingParams(max_tokens=3, temperature=0, ignore_eos=True))
    engine.step()
    engine.abort_request("a")
    outs = {o.request_id: o for o in engine.step()}
    assert outs["a"].finished and outs["a"].outputs[0].finish_reason == "abort"
    while engine.has_unfinished_requests():
        engine.step()
    assert engine.stats().kv_blocks_used == 0


def test_max_tokens_and_context_limit_end_with_length():
    engine = LLMEngine(tiny_model(max_seq_len=48), None, EngineConfig(block_size=4))
    short, full = engine.generate(
        [PROMPTS[0], PROMPTS[1]], SamplingParams(max_tokens=20, temperature=0, ignore_eos=True)
    )
    assert len(short.outputs[0].token_ids) == 20 and short.outputs[0].finish_reason == "length"
    assert len(full.outputs[0].token_ids) == 48 - 39 and full.outputs[0].finish_reason == "length"


def test_bad_engine_config_names_the_field():
    from llm_platform.trainer.inference import EngineConfig

    with pytest.raises(ValueError, match="EngineConfig.block_size"):
        EngineConfig(block_size=0)
    with pytest.raises(ValueError, match="EngineConfig.num_blocks"):
        EngineConfig(num_blocks=-3)


@pytest.mark.parametrize("preset", ["llama-tiny", "deepseek-tiny"])
def test_everything_at_once_changes_no_output(preset):
    """Shared prefixes, a small pool (preemptions), a small budget (chunks) and staggered arrivals together."""
    rng = random.Random(1)
    model = tiny_model(preset)
    shared = [rng.randrange(500) for _ in range(30)]
    prompts = [
        shared[: rng.randint(1, 30)] + [rng.randrange(500) for _ in range(rng.randint(0, 20))] for _ in range(10)
    ]
    params = [SamplingParams(max_tokens=rng.randint(1, 16), temperature=0, ignore_eos=True) for _ in prompts]
    expected = [_alone(model, p, q) for p, q in zip(prompts, params, strict=True)]
    engine = LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=16, max_num_batched_tokens=7, max_num_seqs=5))
    got: dict[int, list[int]] = {}
    pending = list(range(len(prompts)))
    while pending or engine.has_unfinished_requests():
        for _ in range(rng.randint(0, 3)):
            if pending:
                i = pending.pop(0)
                engine.add_request(str(i), prompts[i], params[i])
        got |= {int(o.request_id): o.outputs[0].token_ids for o in engine.step() if o.finished}
    assert [got[i] for i in range(len(prompts))] == expected
    stats = engine.stats()
    assert stats.num_preemptions > 0 and stats.prefix_cache_hit_tokens > 0 and stats.kv_blocks_used == 0


def test_default_pool_fits_the_memory_budget():
    model = tiny_model()  # llama-tiny: 2 layers x (K, V) x 2 KV heads x 32 x 4 bytes = 1 KiB per token
    engine = LLMEngine(model, None, EngineConfig(block_size=4, kv_cache_bytes=100 * 4 * 1024))
    assert engine.stats().kv_blocks_total == 100
    roomy = LLMEngine(model, None, EngineConfig(block_size=4, max_num_seqs=2))  # 2 x 128 tokens fit in 1 GiB
    assert roomy.stats().kv_blocks_total == 2 * 128 // 4
