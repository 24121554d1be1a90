"""Feed-forward blocks: gated linear units (SwiGLU by default, GeGLU, ReGLU) and the plain GELU MLP."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .config import ModelConfig
from .fused_ops import load, swiglu, swiglu_packed
from .init import WeightInit, init_children

ACTIVATIONS = {
    "swiglu": F.silu,
    "geglu": F.gelu,
    "geglu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "reglu": F.relu,
    "gelu": F.gelu,
}


class GatedMLP(nn.Module):
    """down(act(gate(x)) * up(x)) (Shazeer, 2020): Llama's MLP when act is SiLU.

    With ``fused_projections`` gate and up are one ``gate_up_proj`` (rows: gate, then up), one GEMM instead of two.
    """

    def __init__(self, config: ModelConfig, hidden: int) -> None:
        super().__init__()
        self.act, self.is_swiglu, self.kernels = ACTIVATIONS[config.mlp], config.mlp == "swiglu", config.kernels
        self.fused = config.fused_projections
        load(config.kernels)
        if self.fused:
            self.gate_up_proj = nn.Linear(config.dim, 2 * hidden, bias=config.mlp_bias)
        else:
            self.gate_proj = nn.Linear(config.dim, hidden, bias=config.mlp_bias)
            self.up_proj = nn.Linear(config.dim, hidden, bias=config.mlp_bias)
        self.down_proj = nn.Linear(hidden, config.dim, bias=config.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            gate_up = self.gate_up_proj(x)  # (B, T, 2 * hidden)
            if self.is_swiglu:
                return self.down_proj(swiglu_packed(gate_up, self.kernels))
            gate, up = gate_up.chunk(2, dim=-1)
            return self.down_proj(self.act(gate) * up)
        if self.is_swiglu:
            return self.down_proj(swiglu(self.gate_proj(x), self.up_proj(x), self.kernels))
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))

    def init_weights(self, init: WeightInit) -> None:
        """Normal(0, std), down_proj (into the residual stream) the residual std; zero biases."""
        init_children(self, init, residual=self.down_proj)


class PlainMLP(nn.Module):
    """down(gelu(up(x))): the GPT-2 MLP."""

    def __init__(self, config: ModelConfig, hidden: int) -> None:
        super().__init__()
        self.up_proj = nn.Linear(config.dim, hidden, bias=config.mlp_bias)
        self.down_proj = nn.Linear(hidden, config.dim, bias=config.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.gelu(self.up_proj(x)))

    def init_weights(self, init: WeightInit) -> None:
        """Normal(0, std), down_proj (into the residual stream) the residual std; zero biases."""
        init_children(self, init, residual=self.down_proj)


def build_mlp(config: ModelConfig, hidden: int) -> nn.Module:
    return PlainMLP(config, hidden) if config.mlp == "gelu" else GatedMLP(config, hidden)
