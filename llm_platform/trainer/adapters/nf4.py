"""4-bit NormalFloat (NF4) weights with double-quantised scales, as QLoRA (Dettmers et al., 2023) stores a frozen base.

A weight is cut into blocks of 64 values. Each block keeps its absolute maximum, and each value the index (4 bits) of
the nearest of 16 levels in [-1, 1] after dividing by that maximum. The levels are the published NF4 code book: the
quantiles of a standard normal, so each level is equally likely for normally distributed weights, with an exact zero.
Double quantisation stores the per-block maxima themselves in 8 bits: their mean is subtracted, and the rest is
quantised in blocks of 256 to the signed 8-bit dynamic code (bitsandbytes' `create_dynamic_map`), one fp32 scale per
256 maxima. That is 4 + 8/64 + 32/(64*256) ≈ 4.127 bits per weight.

The layout is bitsandbytes' (`quantize_4bit(..., quant_type="nf4", blocksize=64, compress_statistics=True)`): two
codes a byte, the first value in the high nibble; rounding picks the upper level only when a value is strictly above
the midpoint of two levels, as its kernel's comparisons do. Pure PyTorch, so it runs and is tested on any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import torch

BLOCK = 64  # values per absmax (NF4 block)
ABSMAX_BLOCK = 256  # absmax values per fp32 scale (double quantisation)

# The NF4 levels as the QLoRA paper publishes them and bitsandbytes hard-codes them (code 0 ... 15).
NF4_LEVELS = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)


def dynamic_code() -> torch.Tensor:
    """The 256 levels of the signed 8-bit dynamic code: 0, 1, and for each decade 10^-6 ... 10^0, 2^i evenly spaced
    mantissas in (0.1, 1) times that decade, both signs; sorted."""
    values = [0.0, 1.0]
    for i in range(7):
        bounds = torch.linspace(0.1, 1, 2**i + 1)
        means = ((bounds[:-1] + bounds[1:]) / 2.0) * 10 ** (i - 6)
        values += means.tolist() + (-means).tolist()
    return torch.tensor(sorted(values), dtype=torch.float32)


@cache
def _tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(NF4 levels, their midpoints, dynamic levels, their midpoints) on `device`, fp32."""
    nf4 = torch.tensor(NF4_LEVELS, dtype=torch.float64)
    dyn = dynamic_code().double()
    mid = lambda t: ((t[1:] + t[:-1]) / 2).float().to(device)  # noqa: E731
    return nf4.float().to(device), mid(nf4), dyn.float().to(device), mid(dyn)


def _nearest(values: torch.Tensor, midpoints: torch.Tensor) -> torch.Tensor:
    """Index of the nearest level; a value exactly on a midpoint takes the lower level (`x > mid` picks the upper)."""
    return torch.bucketize(values, midpoints, right=False).to(torch.uint8)


def _blocks(flat: torch.Tensor, size: int) -> torch.Tensor:
    """`flat` zero-padded to whole blocks, as (blocks, size); zeros change no block's absolute maximum."""
    pad = -flat.numel() % size
    return torch.nn.functional.pad(flat, (0, pad)).view(-1, size)


@dataclass
class NF4Weight:
    """A weight in NF4. codes: uint8, two 4-bit codes a byte (first value high). absmax_codes: uint8, one a block of
    64. absmax_scales: fp32, one per 256 blocks. absmax_offset: fp32 scalar, the mean of the block maxima."""

    codes: torch.Tensor
    absmax_codes: torch.Tensor
    absmax_scales: torch.Tensor
    absmax_offset: torch.Tensor
    shape: torch.Size

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "codes": self.codes,
            "absmax_codes": self.absmax_codes,
            "absmax_scales": self.absmax_scales,
            "absmax_offset": self.absmax_offset,
        }

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors().values())


@torch.no_grad()
def quantize_absmax(absmax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Double quantisation: (uint8 codes, fp32 scale per 256, fp32 offset) of the fp32 block maxima."""
    _, _, dyn, dyn_mid = _tables(absmax.device)
    offset = absmax.mean()
    blocks = _blocks(absmax - offset, ABSMAX_BLOCK)  # (n / 256, 256)
    scales = blocks.abs().amax(dim=1)
    normalized = blocks * (1.0 / scales.clamp(min=torch.finfo(torch.float32).tiny))[:, None]
    return _nearest(normalized, dyn_mid).flatten()[: absmax.numel()], scales, offset


def dequantize_absmax(codes: torch.Tensor, scales: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    _, _, dyn, _ = _tables(codes.device)
    levels = _blocks(dyn[codes.long()], ABSMAX_BLOCK) * scales[:, None]
    return levels.flatten()[: codes.numel()] + offset


@torch.no_grad()
def quantize_nf4(weight: torch.Tensor) -> NF4Weight:
    """The NF4 form of `weight` (any shape and float dtype; computed in fp32)."""
    nf4, nf4_mid, _, _ = _tables(weight.device)
    blocks = _blocks(weight.detach().float().flatten(), BLOCK)  # (n / 64, 64)
    absmax = blocks.abs().amax(dim=1)
    normalized = blocks * (1.0 / absmax.clamp(min=torch.finfo(torch.float32).tiny))[:, None]  # as the kernel does
    codes = _nearest(normalized, nf4_mid).view(-1, 2)  # (n / 2, 2)
    packed = (codes[:, 0] << 4) | codes[:, 1]
    absmax_codes, absmax_scales, offset = quantize_absmax(absmax)
    return NF4Weight(packed, absmax_codes, absmax_scales, offset, weight.shape)


def dequantize_nf4(q: NF4Weight, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The weight `q` stands for, in `dtype`."""
    nf4, _, _, _ = _tables(q.codes.device)
    absmax = dequantize_absmax(q.absmax_codes, q.absmax_scales, q.absmax_offset)
    codes = torch.stack((q.codes >> 4, q.codes & 0xF), dim=1).flatten().long()
    values = nf4[codes].view(-1, BLOCK) * absmax[:, None]  # (n / 64, 64)
    return values.flatten()[: math.prod(q.shape)].view(q.shape).to(dtype)
