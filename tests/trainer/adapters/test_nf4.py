"""NF4 with double quantisation: the published code book, the byte layout, error bounds, and bitsandbytes where it
runs (CUDA only)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from llm_platform.trainer.adapters.nf4 import (
    ABSMAX_BLOCK,
    BLOCK,
    NF4_LEVELS,
    dequantize_absmax,
    dequantize_nf4,
    dynamic_code,
    quantize_absmax,
    quantize_nf4,
)

# QLoRA appendix E / bitsandbytes' NF4 table, as printed there
PUBLISHED = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
             -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
             0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
             0.7229568362236023, 1.0]  # fmt: skip


def test_the_code_book_is_the_published_one_and_the_normal_quantiles_it_was_built_from():
    assert list(NF4_LEVELS) == PUBLISHED
    # QLoRA's construction: 8 positive and 7 negative quantiles of N(0, 1) with offset 0.9677, normalised to [-1, 1]
    offset = 0.9677083
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)
    positive = normal.icdf(torch.linspace(offset, 0.5, 9, dtype=torch.float64))[:-1]
    negative = -normal.icdf(torch.linspace(offset, 0.5, 8, dtype=torch.float64))[:-1]
    values = torch.cat([positive, torch.zeros(1, dtype=torch.float64), negative]).sort().values
    torch.testing.assert_close(values / values.abs().max(), torch.tensor(PUBLISHED, dtype=torch.float64), atol=1e-6,
                               rtol=0)  # fmt: skip


def test_every_level_quantises_to_itself_and_ties_take_the_lower_level():
    levels = torch.tensor(PUBLISHED)
    weight = torch.cat([levels, levels.flip(0)] * 2)  # one block of 64, absmax 1
    q = quantize_nf4(weight)
    codes = torch.stack((q.codes >> 4, q.codes & 0xF), 1).flatten()
    assert codes[:16].tolist() == list(range(16))  # high nibble first
    assert torch.equal(dequantize_nf4(q), weight)
    mids = (levels[1:] + levels[:-1]) / 2
    on_mid = torch.cat([mids, torch.tensor([1.0]), torch.zeros(64 - 16)])
    tie_codes = torch.stack((quantize_nf4(on_mid).codes >> 4, quantize_nf4(on_mid).codes & 0xF), 1).flatten()
    assert tie_codes[:15].tolist() == list(range(15))


def test_round_trip_error_is_within_half_a_level_gap_of_each_block():
    weight = torch.randn(96, 200, generator=torch.Generator().manual_seed(0)) * 0.02
    q = quantize_nf4(weight)
    assert q.codes.dtype == torch.uint8 and q.codes.numel() == weight.numel() // 2
    assert q.absmax_codes.numel() == weight.numel() // BLOCK
    assert q.absmax_scales.numel() == -(-weight.numel() // (BLOCK * ABSMAX_BLOCK))
    bits = 8 * q.nbytes() / weight.numel()
    assert 4.12 < bits < 4.14, bits  # 4 + 8/64 + 32/(64*256) + the offset
    restored = dequantize_nf4(q)
    blocks = weight.flatten().view(-1, BLOCK)
    widest_gap = max(b - a for a, b in zip(PUBLISHED, PUBLISHED[1:], strict=False))
    absmax = blocks.abs().amax(1, keepdim=True)
    error = (restored.flatten().view(-1, BLOCK) - blocks).abs()
    # half the widest gap of the block's scale, plus what the 8-bit absmax adds (under 1% of it, at most a level)
    assert (error <= absmax * (widest_gap / 2 + 0.01)).all()
    relative = (restored - weight).norm() / weight.norm()
    print(f"NF4 relative error on N(0, 0.02) weights: {relative:.4f}")
    assert relative < 0.11


def test_a_ragged_tail_and_an_all_zero_block_round_trip():
    weight = torch.randn(3 * BLOCK + 10)
    weight[:BLOCK] = 0
    restored = dequantize_nf4(quantize_nf4(weight))
    assert restored.shape == weight.shape
    assert torch.equal(restored[:BLOCK], torch.zeros(BLOCK))
    assert (restored - weight).abs().max() < 0.2 * weight.abs().max()


def test_double_quantisation_keeps_the_block_maxima_within_the_8_bit_code_spacing():
    code = dynamic_code()
    assert code.numel() == 256 and torch.equal(code, code.sort().values)
    assert code.max() == 1 and (code == 0).sum() == 1 and code.min() > -1
    absmax = torch.rand(3 * ABSMAX_BLOCK + 7, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.01
    codes, scales, offset = quantize_absmax(absmax)
    assert codes.dtype == torch.uint8 and scales.numel() == 4
    assert offset == absmax.mean()
    restored = dequantize_absmax(codes, scales, offset)
    centred = absmax - offset
    # the dynamic code's spacing near 1 is 1/64 of the block's scale (its finest decade step is 0.9/128 ≈ 0.0070)
    per_block = torch.nn.functional.pad(centred, (0, -centred.numel() % ABSMAX_BLOCK)).view(-1, ABSMAX_BLOCK)
    bound = per_block.abs().amax(1).repeat_interleave(ABSMAX_BLOCK)[: absmax.numel()] * (0.9 / 64) / 2
    assert ((restored - absmax).abs() <= bound + 1e-7).all()


@pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is None or not torch.cuda.is_available(),
    reason="bitsandbytes' NF4 kernels need CUDA and the bitsandbytes package (the gpu extra); neither is here",
)
def test_the_bytes_equal_bitsandbytes():
    import bitsandbytes.functional as bnbf

    weight = torch.randn(256, 512, generator=torch.Generator().manual_seed(0)).cuda().to(torch.bfloat16)
    packed, state = bnbf.quantize_4bit(weight, blocksize=64, compress_statistics=True, quant_type="nf4")
    ours = quantize_nf4(weight)
    assert torch.equal(packed.flatten().cpu(), ours.codes.cpu())
    assert torch.equal(state.absmax.cpu(), ours.absmax_codes.cpu())
    assert torch.equal(state.state2.absmax.cpu(), ours.absmax_scales.cpu())
    assert torch.equal(bnbf.dequantize_4bit(packed, state).cpu(), dequantize_nf4(ours, torch.bfloat16).cpu())
