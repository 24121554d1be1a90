"""The padded static-shape decode step behind ``EngineConfig(cuda_graphs=True)``: its buckets, its padding, and
that it changes no output (on CPU the same padded step runs eagerly; on CUDA it is what the graphs capture)."""

from __future__ import annotations

import pytest
import torch

from llm_platform.trainer.inference import EngineConfig, LLMEngine, SamplingParams
from llm_platform.trainer.inference.decode_graphs import bucket_for, buckets, pad_layout
from llm_platform.trainer.inference.generate import generate
from llm_platform.trainer.inference.paged_cache import NULL_BLOCK, PagedKVCache, batch_layout

from .conftest import tiny_model

PROMPTS = [[5, 17, 42, 7], list(range(1, 40)), [9] * 13, list(range(100, 121)), [300, 2, 301]]


def test_buckets_are_powers_of_two_capped_by_the_limit():
    assert buckets(64) == [1, 2, 4, 8, 16, 32, 64]
    assert buckets(48) == [1, 2, 4, 8, 16, 32, 48]
    assert buckets(5, smallest=16) == [5]
    assert buckets(128, smallest=16) == [16, 32, 64, 128]
    assert [bucket_for(n, buckets(48)) for n in (1, 3, 33, 48, 49)] == [1, 4, 48, 48, None]


def test_padding_rows_write_the_null_block_and_see_one_finite_key():
    model = tiny_model()
    cache = PagedKVCache(model.config, num_blocks=20, block_size=4, max_num_seqs=4, max_step_tokens=16)
    seqs = [cache.new_sequence() for _ in range(3)]
    for seq, computed in zip(seqs, (5, 9, 0), strict=True):
        cache.allocate(seq, computed, 1)
    layout = pad_layout(batch_layout(cache, [(s, c, 1) for s, c in zip(seqs, (5, 9, 0), strict=True)], 1, 8), 4)
    assert layout.positions.view(-1).tolist() == [5, 9, 0, 0]
    assert layout.tables[0].shape == (4, 8) and layout.key_positions[0].shape == (4, 32)
    assert layout.slots[0][3] == NULL_BLOCK and (layout.tables[0][3] == NULL_BLOCK).all()
    assert (layout.key_positions[0][3] >= 0).tolist() == [True] + [False] * 31
    # real rows: the table's padding entries are masked, their own keys 0 .. position are not
    assert (layout.key_positions[0][1] >= 0).sum() == 10
    assert layout.slots[0][1] == seqs[1].tables[0][2] * 4 + 1


@pytest.mark.parametrize(
    ("preset", "overrides"),
    [
        ("llama-tiny", {}),
        ("mistral-tiny", {"sliding_window": 8, "sliding_window_layers": [1]}),
        ("deepseek-tiny", {"n_layers": 1}),  # its first layer is dense: MLA without MoE
        ("deepseek-tiny", {}),
    ],
    ids=["gqa", "window-and-full-layers", "mla", "mla-moe-stays-eager"],
)
def test_graph_decode_changes_no_output(preset, overrides):
    model = tiny_model(preset, **overrides)
    params = [SamplingParams(max_tokens=n, temperature=0, ignore_eos=True) for n in (14, 3, 9, 14, 6)]
    engine = LLMEngine(model, None, EngineConfig(block_size=4, max_num_batched_tokens=16, cuda_graphs=True))
    outs = engine.generate(PROMPTS, params)
    for prompt, p, out in zip(PROMPTS, params, outs, strict=True):
        assert out.outputs[0].token_ids == generate(model, prompt, p.max_tokens, temperature=0)
    graphs = engine.runner.graphs
    assert graphs.enabled == (overrides != {} or preset != "deepseek-tiny")
    if graphs.enabled:  # decode batches shrink as requests end: 3 rows padded to 4, then 2, then 1
        assert {rows for rows, _ in graphs.buffers} >= {1, 2, 4}


def test_graph_decode_with_sampling_and_logprobs_equals_eager():
    model = tiny_model()
    params = SamplingParams(max_tokens=8, temperature=0.8, top_p=0.9, seed=3, logprobs=2)
    outs = {}
    for graphs in (False, True):
        engine = LLMEngine(model, None, EngineConfig(block_size=4, cuda_graphs=graphs))
        outs[graphs] = [o.outputs[0] for o in engine.generate(PROMPTS, params)]
    for eager, graphed in zip(outs[False], outs[True], strict=True):
        assert graphed.token_ids == eager.token_ids
        for a, b in zip(graphed.logprobs, eager.logprobs, strict=True):
            assert a.logprob == pytest.approx(b.logprob, abs=1e-5)
    assert torch.cuda.is_available() or not engine.runner.graphs.capture


def test_padding_only_buffers_run_to_finite_logits():
    """What capture_all's warm-ups and captures run on CUDA before any request: every row padding."""
    model = tiny_model()
    engine = LLMEngine(model, None, EngineConfig(block_size=4, max_num_seqs=3, cuda_graphs=True))
    graphs = engine.runner.graphs
    before = {layer: pool.clone() for layer, pool in engine.cache.first.items()}
    with torch.no_grad():
        graphs.capture_all()
        assert sorted(graphs.buffers) == [(r, b) for r in (1, 2, 3) for b in graphs.block_counts]
        for buffers in graphs.buffers.values():
            assert torch.isfinite(graphs._step(buffers)).all()
    for layer, pool in engine.cache.first.items():  # only the null block was written
        assert torch.equal(pool[1:], before[layer][1:])
