"""Normalisation layers: RMSNorm (default) and LayerNorm."""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig


def output_dtype(x: torch.Tensor) -> torch.dtype:
    """What a norm returns: the autocast dtype under autocast (what the next matmul reads anyway), else x's dtype.

    With float32 master weights the residual stream and the gains are float32, so the norm's product would be
    float32 and every following projection would cast it again; returning bf16 directly halves the bytes the norm
    writes and its consumers read, and the projections see the same values."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain, returning `output_dtype(x)`.

    Statistics are taken in float32 and the result cast back before the gain, as Llama does, so that bf16 models match
    Hugging Face bit for bit.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight * normed.to(x.dtype)).to(output_dtype(x))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)


class LayerNorm(nn.Module):
    """LayerNorm with gain and bias, statistics in float32, returning `output_dtype(x)`."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = nn.functional.layer_norm(x.float(), x.shape[-1:], eps=self.eps).to(x.dtype)
        return (normed * self.weight + self.bias).to(output_dtype(x))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)


def build_norm(config: ModelConfig, dim: int) -> nn.Module:
    if config.norm == "layernorm":
        return LayerNorm(dim, config.norm_eps)
    return RMSNorm(dim, config.norm_eps)
