"""RoPE frequencies against transformers' reference functions, exactness at 128K positions, and the cached table."""

from __future__ import annotations

import math

import pytest
import torch

from llm_platform.trainer.model import Transformer, get_config
from llm_platform.trainer.model.rope import RotaryTable, apply_rotary, rope_cos_sin, rope_frequencies

transformers = pytest.importorskip("transformers")
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402

HEAD_DIM = 128

SCALINGS = {
    "linear": ({"type": "linear", "factor": 8.0}, {"rope_type": "linear", "factor": 8.0}),
    "yarn": (
        {"type": "yarn", "factor": 32.0, "original_max_seq_len": 4096, "beta_fast": 32, "beta_slow": 1},
        {
            "rope_type": "yarn",
            "factor": 32.0,
            "original_max_position_embeddings": 4096,
            "beta_fast": 32,
            "beta_slow": 1,
        },
    ),
    "yarn-deepseek-mscale": (
        {"type": "yarn", "factor": 40.0, "original_max_seq_len": 4096, "mscale": 0.707, "mscale_all_dim": 1.0},
        {
            "rope_type": "yarn",
            "factor": 40.0,
            "original_max_position_embeddings": 4096,
            "mscale": 0.707,
            "mscale_all_dim": 1.0,
        },
    ),
    "llama3": (
        {
            "type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_seq_len": 8192,
        },
        {
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    ),
}


def hf_frequencies(rope_parameters: dict, max_position: int, seq_len: int | None = None):
    config = transformers.LlamaConfig(
        hidden_size=HEAD_DIM * 4,
        num_attention_heads=4,
        max_position_embeddings=max_position,
        rope_parameters={**rope_parameters, "rope_theta": 500000.0},
    )
    kind = rope_parameters["rope_type"]
    return (
        ROPE_INIT_FUNCTIONS[kind](config, "cpu", seq_len=seq_len)
        if seq_len
        else ROPE_INIT_FUNCTIONS[kind](config, "cpu")
    )


@pytest.mark.parametrize("name", sorted(SCALINGS))
def test_scaled_frequencies_match_transformers(name):
    ours, theirs = SCALINGS[name]
    inv_freq, factor = rope_frequencies(HEAD_DIM, 500000.0, ours, seq_len=131072, max_seq_len=131072)
    ref_inv_freq, ref_factor = hf_frequencies(theirs, 131072)
    torch.testing.assert_close(inv_freq.float(), ref_inv_freq, rtol=1e-6, atol=0)
    assert factor == pytest.approx(ref_factor, rel=1e-9)


@pytest.mark.parametrize("seq_len", [2048, 4096, 20000])
def test_dynamic_ntk_matches_transformers_at_each_length(seq_len):
    inv_freq, _ = rope_frequencies(
        HEAD_DIM, 500000.0, {"type": "dynamic-ntk", "factor": 4.0}, seq_len=seq_len, max_seq_len=4096
    )
    ref, _ = hf_frequencies({"rope_type": "dynamic", "factor": 4.0}, 4096, seq_len=seq_len)
    torch.testing.assert_close(inv_freq.float(), ref, rtol=1e-6, atol=0)


def test_dynamic_ntk_leaves_short_sequences_unscaled():
    plain, _ = rope_frequencies(HEAD_DIM, 1e4, None, seq_len=100, max_seq_len=4096)
    dynamic, _ = rope_frequencies(HEAD_DIM, 1e4, {"type": "dynamic-ntk", "factor": 4.0}, seq_len=100, max_seq_len=4096)
    torch.testing.assert_close(plain, dynamic)


@pytest.mark.parametrize("name", ["none", "llama3", "yarn"])
def test_angles_are_exact_at_128k_positions(name):
    scaling = None if name == "none" else SCALINGS[name][0]
    positions = torch.tensor([131071, 100_000, 65_537])
    cos, sin = rope_cos_sin(
        positions, HEAD_DIM, 500000.0, scaling, seq_len=131072, max_seq_len=131072, dtype=torch.float32
    )
    inv_freq, factor = rope_frequencies(HEAD_DIM, 500000.0, scaling, seq_len=131072, max_seq_len=131072)
    for row, position in enumerate(positions.tolist()):
        for i in (0, 1, 7, 31, 63):  # the fastest-turning channels lose the most in float32
            angle = position * inv_freq[i].item()  # exact double-precision reference
            assert cos[row, i].item() == pytest.approx(math.cos(angle) * factor, abs=2e-7)
            assert sin[row, i + HEAD_DIM // 2].item() == pytest.approx(math.sin(angle) * factor, abs=2e-7)


def test_whole_128k_table_is_exact_where_float32_angles_are_not():
    positions = torch.arange(131072)
    cos, _ = rope_cos_sin(positions, HEAD_DIM, 500000.0, None, seq_len=131072, max_seq_len=131072, dtype=torch.float32)
    inv_freq, _ = rope_frequencies(HEAD_DIM, 500000.0, None, seq_len=1, max_seq_len=1)
    exact = (positions.double()[:, None] * inv_freq).cos()
    float32_angles = (positions.float()[:, None] * inv_freq.float()).cos().double()
    assert (cos[:, : HEAD_DIM // 2].double() - exact).abs().max() < 1e-7
    assert (float32_angles - exact).abs().max() > 1e-3  # what a float32 position x frequency product would give


def test_rotation_preserves_norm_and_relative_position():
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 64), torch.randn(1, 1, 1, 64)

    def score(pos_q: int, pos_k: int) -> float:
        cos, sin = rope_cos_sin(
            torch.tensor([pos_q, pos_k]), 64, 1e4, None, seq_len=pos_q + 1, max_seq_len=4096, dtype=torch.float64
        )
        rq = apply_rotary(q.double(), cos[:1], sin[:1])
        rk = apply_rotary(k.double(), cos[1:], sin[1:])
        assert rq.norm().item() == pytest.approx(q.double().norm().item())
        return (rq * rk).sum().item()

    assert score(10, 3) == pytest.approx(score(1007, 1000), rel=1e-9)


TABLE_SCALINGS = {
    "none": None,
    "linear": SCALINGS["linear"][0],
    "yarn": SCALINGS["yarn"][0],
    "llama3": SCALINGS["llama3"][0],
    "dynamic-ntk": {"type": "dynamic-ntk", "factor": 4.0, "original_max_seq_len": 512},
}


@pytest.mark.parametrize("name", sorted(TABLE_SCALINGS))
@pytest.mark.parametrize("start, seq", [(0, 300), (200, 40), (500, 100), (1000, 24)])
def test_cached_table_matches_the_direct_computation(name, start, seq):
    """Inside the table, past it (1000 + 24 > 1024) and, for dynamic NTK, past its original context (512)."""
    scaling = TABLE_SCALINGS[name]
    table = RotaryTable(HEAD_DIM, 500000.0, scaling, max_seq_len=1000)
    cos, sin = table(start, seq, torch.float32)
    ref_cos, ref_sin = rope_cos_sin(
        torch.arange(start, start + seq),
        HEAD_DIM,
        500000.0,
        scaling,
        seq_len=start + seq,
        max_seq_len=1000,
        dtype=torch.float32,
    )
    torch.testing.assert_close(cos, ref_cos, rtol=0, atol=0)
    torch.testing.assert_close(sin, ref_sin, rtol=0, atol=0)


def test_cached_table_survives_a_round_trip_through_bf16():
    model = Transformer(get_config("llama-tiny", rope_scaling=SCALINGS["yarn"][0], max_seq_len=4096))
    fresh = model.rotary(0, 4096, torch.float32)
    model.to(torch.bfloat16).to(torch.float32)
    assert model.rotary.cos_half.dtype == torch.float32
    for ours, ref in zip(model.rotary(0, 4096, torch.float32), fresh, strict=True):
        torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_cached_table_is_rebuilt_after_a_meta_build():
    config = get_config("llama-tiny", max_seq_len=4096)
    with torch.device("meta"):
        model = Transformer(config)
    model.materialize_non_persistent("cpu")
    reference = Transformer(config).rotary(100, 50, torch.float32)
    for ours, ref in zip(model.rotary(100, 50, torch.float32), reference, strict=True):
        torch.testing.assert_close(ours, ref, rtol=0, atol=0)
