"""Rotary position embedding (RoPE) and its context-extension scalings: linear, dynamic NTK, YaRN and Llama 3.

Angles are computed in float64 and only the final cos/sin are cast down, so position 131071 is as exact as
position 1 (a float32 ``position * inv_freq`` is off by up to ~1e-2 rad at 128K).

``RotaryTable`` computes that once per model, for every position up to the context length, and keeps it as float32
buffers that a forward only slices: computed inside a compiled graph, the float64 transcendentals were fused into
every rotary kernel and recomputed per element of q and k (a fifth of a 125M training step on an H200).

Layout: the "rotate half" convention of Hugging Face checkpoints (dimension i pairs with i + d/2).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def _base_inv_freq(dim: int, theta: float, device: torch.device | None) -> torch.Tensor:
    exponents = torch.arange(0, dim, 2, dtype=torch.float64, device=device) / dim
    return 1.0 / (theta**exponents)


def yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    """YaRN's attention temperature correction sqrt(1/t) = 0.1 ln(s) + 1 (identity for s <= 1)."""
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def _yarn(dim: int, theta: float, s: dict[str, Any], original: int, device: torch.device | None):
    factor = float(s["factor"])
    extrapolated = _base_inv_freq(dim, theta, device)
    interpolated = extrapolated / factor

    # Dimensions that turn fewer than beta_slow times over the original context are interpolated, those that turn more
    # than beta_fast times are kept, and a linear ramp blends the ones in between.
    def correction_dim(rotations: float) -> float:
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = correction_dim(s.get("beta_fast") or 32), correction_dim(s.get("beta_slow") or 1)
    if s.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float64, device=device) - low) / (high - low)).clamp(0, 1)
    inv_freq = interpolated * ramp + extrapolated * (1 - ramp)

    attention_factor = s.get("attention_factor")
    if attention_factor is None:
        mscale, mscale_all_dim = s.get("mscale"), s.get("mscale_all_dim")
        if mscale and mscale_all_dim:
            attention_factor = yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim)
        else:
            attention_factor = yarn_mscale(factor)
    return inv_freq, float(attention_factor)


def _llama3(dim: int, theta: float, s: dict[str, Any], device: torch.device | None) -> torch.Tensor:
    inv_freq = _base_inv_freq(dim, theta, device)
    factor, low, high = float(s["factor"]), float(s["low_freq_factor"]), float(s["high_freq_factor"])
    original = float(s["original_max_seq_len"])
    wavelen = 2 * math.pi / inv_freq
    # Long wavelengths are interpolated by `factor`, short ones kept, and the band between blended smoothly.
    smooth = ((original / wavelen - low) / (high - low)).clamp(0, 1)
    return (1 - smooth) * inv_freq / factor + smooth * inv_freq


def rope_frequencies(
    dim: int,
    theta: float,
    scaling: dict[str, Any] | None,
    *,
    seq_len: int,
    max_seq_len: int,
    device: torch.device | None = None,
) -> tuple[torch.Tensor, float]:
    """Inverse frequencies (float64, ``dim // 2`` of them) and the factor cos/sin are multiplied by.

    seq_len: the longest position + 1 in this forward; only dynamic NTK depends on it.
    """
    if scaling is None:
        return _base_inv_freq(dim, theta, device), 1.0
    kind = scaling["type"]
    original = int(scaling.get("original_max_seq_len") or max_seq_len)
    if kind == "linear":
        return _base_inv_freq(dim, theta, device) / float(scaling["factor"]), 1.0
    if kind == "dynamic-ntk":
        factor = float(scaling["factor"])
        if seq_len > original:
            theta = theta * ((factor * seq_len / original) - (factor - 1)) ** (dim / (dim - 2))
        return _base_inv_freq(dim, theta, device), 1.0
    if kind == "yarn":
        return _yarn(dim, theta, scaling, original, device)
    if kind == "llama3":
        return _llama3(dim, theta, scaling, device), 1.0
    raise ValueError(f"rope_scaling.type {kind!r} is not supported")


def rope_cos_sin(
    positions: torch.Tensor,
    dim: int,
    theta: float,
    scaling: dict[str, Any] | None,
    *,
    seq_len: int,
    max_seq_len: int,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape ``positions.shape + (dim,)`` in ``dtype``, ready for ``apply_rotary``."""
    inv_freq, attention_factor = rope_frequencies(
        dim, theta, scaling, seq_len=seq_len, max_seq_len=max_seq_len, device=positions.device
    )
    angles = positions.to(torch.float64).unsqueeze(-1) * inv_freq
    angles = torch.cat((angles, angles), dim=-1)
    return (angles.cos() * attention_factor).to(dtype), (angles.sin() * attention_factor).to(dtype)


class RotaryTable(nn.Module):
    """cos/sin of positions 0 .. max_seq_len - 1, computed once in float64 and kept as float32 non-persistent buffers
    (half width: the two halves of a head are equal); ``forward`` slices them by position and casts to the compute
    dtype.

    Positions past the table, float64 models and dynamic NTK past its original context (whose frequencies depend on
    the sequence length) are computed on the fly by ``rope_cos_sin``, as before. Any ``model.to(...)`` rebuilds the
    table in float32 on the new device, so a round trip through bf16 never rounds it.
    """

    def __init__(self, dim: int, theta: float, scaling: dict[str, Any] | None, max_seq_len: int) -> None:
        super().__init__()
        self.dim, self.theta, self.scaling, self.max_seq_len = dim, theta, scaling, max_seq_len
        length = max_seq_len
        if scaling is not None and scaling["type"] == "dynamic-ntk":
            length = min(length, int(scaling.get("original_max_seq_len") or max_seq_len))
        self.register_buffer("cos_half", torch.empty(length, dim // 2), persistent=False)
        self.register_buffer("sin_half", torch.empty(length, dim // 2), persistent=False)
        self.rebuild(self.cos_half.device)

    @torch.no_grad()
    def rebuild(self, device: torch.device | str) -> None:
        """(Re)compute the table on `device`: after building the model on the meta device, or after a cast."""
        positions = torch.arange(self.cos_half.shape[0], device=device)
        inv_freq, factor = rope_frequencies(
            self.dim, self.theta, self.scaling, seq_len=len(positions), max_seq_len=self.max_seq_len, device=device
        )
        angles = positions.to(torch.float64).unsqueeze(-1) * inv_freq
        self.cos_half = (angles.cos() * factor).float()
        self.sin_half = (angles.sin() * factor).float()

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        self.rebuild(self.cos_half.device)
        return self

    def forward(self, start_pos: int, seq: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin [seq, dim] in `dtype` for positions start_pos .. start_pos + seq - 1."""
        end = start_pos + seq
        return self.at(torch.arange(start_pos, end, device=self.cos_half.device), dtype, end)

    def at(
        self, positions: torch.Tensor, dtype: torch.dtype, end: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin [B, T, dim] in `dtype` for per-row positions [B, T] (sequences of different lengths). Past the
        table (dynamic NTK beyond its original context) the frequencies follow the batch's furthest position.

        end: positions.max() + 1 when the caller knows it on the host (saves a device-to-host sync, and lets a
        CUDA graph capture the lookup); any value up to the table's length gives the same table lookup."""
        end = int(positions.max()) + 1 if end is None else end
        if end > self.cos_half.shape[0] or dtype == torch.float64:
            return rope_cos_sin(
                positions,
                self.dim,
                self.theta,
                self.scaling,
                seq_len=end,
                max_seq_len=self.max_seq_len,
                dtype=dtype,
            )
        cos, sin = self.cos_half[positions], self.sin_half[positions]
        return torch.cat((cos, cos), dim=-1).to(dtype), torch.cat((sin, sin), dim=-1).to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates ``x`` of shape [B, heads, T, dim] by cos/sin of shape [T, dim] or [B, T, dim]."""
    if cos.dim() == 3:
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + rotate_half(x) * sin
