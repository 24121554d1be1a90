"""Normalisation layers: RMSNorm (default) and LayerNorm."""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .fused_ops import add_rms_norm, load, output_dtype, rms_norm


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain, returning `output_dtype(x)`.

    Statistics are taken in float32 and the result cast back before the gain, as Llama does, so that bf16 models match
    Hugging Face bit for bit.
    """

    def __init__(self, dim: int, eps: float = 1e-6, kernels: str = "torch") -> None:
        super().__init__()
        self.eps, self.kernels = eps, kernels
        load(kernels)
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps, self.kernels)

    def add_and_norm(self, x: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x + delta, self(x + delta)): a block's residual add and the norm after it, fused on the GPU."""
        return add_rms_norm(x, delta, self.weight, self.eps, self.kernels)

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

    def add_and_norm(self, x: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        summed = x + delta
        return summed, self(summed)

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)


def build_norm(config: ModelConfig, dim: int) -> nn.Module:
    if config.norm == "layernorm":
        return LayerNorm(dim, config.norm_eps)
    return RMSNorm(dim, config.norm_eps, config.kernels)
