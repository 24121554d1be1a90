"""Weight initialisation, done by each module for its own weights (`init_weights(init)`), with the settings here.

Normal(0, init_std) for weight matrices, zero biases, unit norm gains; a projection that adds into the residual stream
(attention's o_proj, the MLP's down_proj) gets init_std / sqrt(2 * n_layers), so the stream's variance does not grow
with depth (GPT-2). Modules draw in the order they register their children, the order of `named_parameters()`, so a
seeded init equals one walk over the model's parameters with that rule (tests/trainer/model/test_init.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class WeightInit:
    std: float
    residual_std: float
    generator: torch.Generator | None = None

    @classmethod
    def of(cls, init_std: float, n_layers: int, generator: torch.Generator | None = None) -> WeightInit:
        return cls(init_std, init_std / math.sqrt(2 * n_layers), generator)

    def normal_(self, weight: torch.Tensor, residual: bool = False) -> None:
        nn.init.normal_(weight, 0.0, self.residual_std if residual else self.std, generator=self.generator)

    def linear(self, layer: nn.Linear, residual: bool = False) -> None:
        self.normal_(layer.weight, residual)
        if layer.bias is not None:
            layer.bias.zero_()


def init_children(module: nn.Module, init: WeightInit, residual: nn.Module | None = None) -> None:
    """Initialise `module`'s direct children in their order: linear layers as `init.linear` (`residual` being the one
    that adds into the residual stream), any other child by its own `init_weights(init)` or `reset_parameters()`."""
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            init.linear(child, residual=child is residual)
        elif hasattr(child, "init_weights"):
            child.init_weights(init)
        elif hasattr(child, "reset_parameters"):
            child.reset_parameters()
        elif any(True for _ in child.parameters()):
            raise TypeError(f"{type(module).__name__}.{name} ({type(child).__name__}) has no init_weights")
