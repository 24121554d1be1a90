"""Attention: GQA/MQA against a written-out reference, masks, ALiBi, and the flash_attn switch."""

from __future__ import annotations

import math

import pytest
import torch

from llm_platform.trainer.model import get_config
from llm_platform.trainer.model.alibi import alibi_slopes
from llm_platform.trainer.model.attention import Attention, AttentionContext
from llm_platform.trainer.model.kernels import attention, flash_attn_func, position_mask
from llm_platform.trainer.model.rope import rope_cos_sin


def reference_attention(module: Attention, x: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """Per-head loops and an explicit softmax: slow and obvious."""
    batch, seq, _ = x.shape
    hd, groups = module.head_dim, module.n_heads // module.n_kv_heads
    q = module.q_proj(x).view(batch, seq, module.n_heads, hd)
    k = module.k_proj(x).view(batch, seq, module.n_kv_heads, hd)
    v = module.v_proj(x).view(batch, seq, module.n_kv_heads, hd)
    heads = []
    for h in range(module.n_heads):
        scores = q[:, :, h] @ k[:, :, h // groups].transpose(1, 2) / math.sqrt(hd)
        i, j = torch.arange(seq)[:, None], torch.arange(seq)[None, :]
        allowed = (j <= i) & ((i - j < window) if window else True)
        heads.append(scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v[:, :, h // groups])
    return module.o_proj(torch.cat(heads, dim=-1))


def no_rope_context(seq: int) -> AttentionContext:
    return AttentionContext(positions=torch.arange(seq), rope=None)


@pytest.mark.parametrize("kv_heads", [8, 2, 1])  # MHA, GQA 4, MQA
def test_grouped_heads_match_reference(kv_heads):
    torch.manual_seed(0)
    module = Attention(get_config("llama-tiny", n_heads=8, num_kv_heads=kv_heads), layer=0)
    x = torch.randn(2, 12, 128)
    with torch.no_grad():
        torch.testing.assert_close(module(x, no_rope_context(12)), reference_attention(module, x))


def test_sliding_window_matches_reference():
    torch.manual_seed(0)
    module = Attention(get_config("llama-tiny", sliding_window=4), layer=0)
    x = torch.randn(1, 16, 128)
    with torch.no_grad():
        torch.testing.assert_close(module(x, no_rope_context(16)), reference_attention(module, x, window=4))


def test_window_applies_only_to_listed_layers():
    c = get_config("llama-tiny", n_layers=3, sliding_window=8, sliding_window_layers=[1])
    assert [c.window_for_layer(i) for i in range(3)] == [None, 8, None]


def test_position_mask_sees_self_and_window_minus_one_before():
    allowed = position_mask(torch.arange(6), torch.arange(6), window=3)
    assert allowed[5].tolist() == [False, False, False, True, True, True]
    assert allowed.sum(1).tolist() == [1, 2, 3, 3, 3, 3]


def test_position_mask_skips_empty_cache_slots():
    allowed = position_mask(torch.tensor([4]), torch.tensor([-1, 3, 4]), window=None)
    assert allowed.tolist() == [[False, True, True]]


@pytest.mark.parametrize("n_heads", [8, 12])  # a power of two, and one that is not
def test_alibi_slopes_match_transformers_bloom(n_heads):
    bloom = pytest.importorskip("transformers.models.bloom.modeling_bloom")
    mask = torch.ones(1, 5)
    # Bloom's tensor is slope x key position; its first key position is 0, so position 1 gives the slopes.
    reference = bloom.build_alibi_tensor(mask, n_heads, torch.float32).view(n_heads, 5)[:, 1]
    torch.testing.assert_close(alibi_slopes(n_heads), reference)


def test_alibi_penalises_distance_per_head():
    torch.manual_seed(0)
    q, k = torch.zeros(1, 4, 3, 8), torch.zeros(1, 4, 3, 8)  # equal scores: only the bias shapes the softmax
    v = torch.eye(3).expand(1, 4, 3, 3)
    slopes = alibi_slopes(4)
    bias = slopes[:, None, None] * (torch.arange(3)[None, :] - torch.arange(3)[:, None]).float()
    out = attention(q, k, v, scale=1.0, q_positions=torch.arange(3), k_positions=None, window=None, bias=bias)
    expected = torch.softmax(torch.stack([-2 * slopes, -slopes, torch.zeros(4)], dim=-1), dim=-1)
    torch.testing.assert_close(out[0, :, 2], expected)


def test_qk_norm_normalises_each_head_before_rope():
    torch.manual_seed(0)
    module = Attention(get_config("llama-tiny", qk_norm=True), layer=0)
    x = torch.randn(1, 5, 128) * 50  # large inputs: without the norm the softmax would saturate
    ctx = AttentionContext(
        torch.arange(5), rope_cos_sin(torch.arange(5), 32, 1e4, None, seq_len=5, max_seq_len=64, dtype=torch.float32)
    )
    captured = {}
    module.q_norm.register_forward_hook(lambda mod, inp, out: captured.setdefault("q", out))
    module(x, ctx)
    rms = captured["q"].pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.ones_like(rms), atol=1e-3, rtol=0)


@pytest.mark.skipif(flash_attn_func() is not None, reason="flash_attn is installed here")
def test_choosing_flash_attn_without_the_package_fails_at_build_time_with_the_fix():
    with pytest.raises(ImportError, match="pip install flash-attn"):
        Attention(get_config("llama-tiny", attn_impl="flash_attn"), layer=0)


def test_auto_without_flash_attn_uses_sdpa():
    module = Attention(get_config("llama-tiny"), layer=0)
    assert module.flash_fn is flash_attn_func()
    assert module(torch.randn(1, 4, 128), no_rope_context(4)).shape == (1, 4, 128)
