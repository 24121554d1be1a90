"""The adapter layer: a frozen linear map plus a trained low-rank update (LoRA), optionally weight-decomposed (DoRA).

LoRA (Hu et al., 2021):  y = W x + b + s * B A dropout(x),  s = alpha / r,  A kaiming-uniform, B zero, so training
starts from the base model exactly.

DoRA (Liu et al., 2024) splits the adapted weight W' = W + s B A into a direction and a trained magnitude m, one per
output row: y = m / ||W'||_row * W' x + b. As the paper (section 4.3) and peft do, ||W'|| is detached: it follows the
update in the forward pass but takes no gradient. The magnitude starts at ||W||_row, so training starts from the base
model here too. Written like peft's forward, base + (m/||W'|| - 1) * W x + m/||W'|| * s * B A x, so that with
dropout the base term sees the undropped input, as in peft.

The state-dict names (``weight``, ``bias``, ``lora_A.weight``, ``lora_B.weight``, ``lora_magnitude_vector``) are the
ones peft writes into adapter files, which keeps the file mapping a rename of the module path only.

Over a QLoRA base (an ``NF4Linear``) the layer keeps that module as ``quantized`` and no ``weight``: the base term
runs through its 4-bit matmul, and DoRA's norms and the merge read its dequantised weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .qlora import NF4Linear

HALF_DTYPES = (torch.float16, torch.bfloat16)


def adapter_dtype(base_dtype: torch.dtype) -> torch.dtype:
    """Adapters stay float32 over a half-precision base (as peft's ``autocast_adapter_dtype``): small updates to a
    rank-r matrix are lost in bf16 rounding."""
    return torch.float32 if base_dtype in HALF_DTYPES else base_dtype


DEFAULT_ADAPTER = "default"


@dataclass
class ParkedAdapter:
    """A named adapter of a layer while another one (or none) is installed: its modules and settings, kept as they
    were (trained values, device) but outside the module tree, so they take no part in forward, state_dict or
    ``model.to``."""

    lora_A: nn.Linear
    lora_B: nn.Linear
    magnitude: nn.Parameter | None
    rank: int
    alpha: float
    dropout: nn.Module


class LoraLinear(nn.Module):
    """Stands in for an ``nn.Linear`` (or a QLoRA ``NF4Linear``) whose weight and bias (the same objects) it keeps,
    frozen.

    Several named adapters may live on one layer: one is installed (``adapter_name``; its modules are ``lora_A``,
    ``lora_B``, ``lora_magnitude_vector``, so training, state dicts and peft files see it alone) and the others are
    ``parked``. ``adapter_name`` None: the layer computes its base only."""

    def __init__(
        self,
        base: nn.Linear | NF4Linear,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        dora: bool = False,
        name: str = DEFAULT_ADAPTER,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.parked: dict[str, ParkedAdapter] = {}
        self.adapter_name: str | None = None
        self.merged = False  # the installed adapter's delta is in the base weight (named.merge_adapter)
        self.quantized = base if isinstance(base, NF4Linear) else None
        self.register_parameter("weight", None if self.quantized is not None else base.weight)
        self.register_parameter("bias", base.bias)
        for param in (self.weight, self.bias):
            if param is not None:
                param.requires_grad_(False)
        self.add_adapter(name, rank, alpha, dropout, dora)

    def add_adapter(self, name: str, rank: int, alpha: float, dropout: float = 0.0, dora: bool = False) -> None:
        """A new adapter (A kaiming-uniform, B zero), installed; the one installed before is parked."""
        if name == self.adapter_name or name in self.parked:
            raise ValueError(f"adapter {name!r} already exists on this layer")
        self.park()
        factory = {"device": self.adapter_device(), "dtype": adapter_dtype(self.base_dtype)}
        self.rank, self.alpha, self.scaling = rank, alpha, alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.Linear(self.in_features, rank, bias=False, **factory)
        self.lora_B = nn.Linear(rank, self.out_features, bias=False, **factory)
        self.reset_adapter()
        magnitude = None
        if dora:
            with torch.no_grad():
                magnitude = nn.Parameter(torch.linalg.vector_norm(self.dense_weight(factory["dtype"]), dim=1))
        self.register_parameter("lora_magnitude_vector", magnitude)
        self.adapter_name = name

    def park(self) -> None:
        """Moves the installed adapter (if any) to ``parked``; the layer then computes its base only."""
        if self.adapter_name is None:
            return
        self.parked[self.adapter_name] = ParkedAdapter(
            self.lora_A, self.lora_B, self.lora_magnitude_vector, self.rank, self.alpha, self.dropout
        )
        self.lora_A = self.lora_B = None
        self.register_parameter("lora_magnitude_vector", None)
        self.adapter_name = None

    def install(self, name: str | None) -> None:
        """Installs the named adapter (parking the current one); None, or a name this layer lacks: none installed."""
        if name == self.adapter_name:
            return
        self.park()
        adapter = self.parked.pop(name, None) if name is not None else None
        if adapter is None:
            return
        self.lora_A, self.lora_B, self.dropout = adapter.lora_A, adapter.lora_B, adapter.dropout
        self.register_parameter("lora_magnitude_vector", adapter.magnitude)
        self.rank, self.alpha, self.scaling = adapter.rank, adapter.alpha, adapter.alpha / adapter.rank
        self.to(self.adapter_device())
        self.adapter_name = name

    def adapter_device(self) -> torch.device:
        return self.quantized.codes.device if self.quantized is not None else self.weight.device

    def names(self) -> list[str]:
        """Every adapter of this layer, installed or parked."""
        return sorted([*self.parked, *([self.adapter_name] if self.adapter_name is not None else [])])

    @property
    def dora(self) -> bool:
        return self.lora_magnitude_vector is not None

    @property
    def base_dtype(self) -> torch.dtype:
        """The dtype the base computes (and merges) in: its weight's, or a QLoRA base's compute dtype."""
        return self.quantized.compute_dtype if self.quantized is not None else self.weight.dtype

    def dense_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """The base weight in `dtype` (dequantised for a QLoRA base)."""
        return self.quantized.dequantize(dtype) if self.quantized is not None else self.weight.to(dtype)

    def _base(self, x: torch.Tensor, bias: bool = True) -> torch.Tensor:
        if self.quantized is not None:
            out = self.quantized.matmul(x)
            return out + self.bias.to(out.dtype) if bias and self.bias is not None else out
        return F.linear(x, self.weight.to(x.dtype), self.bias if bias else None)

    @torch.no_grad()
    def reset_adapter(self) -> None:
        """A as nn.Linear's default (kaiming-uniform, a = sqrt(5)) and B = 0, as peft and the LoRA paper do."""
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self._base(x) if self.quantized is not None else F.linear(x, self.weight, self.bias)
        if self.lora_A is None or self.merged:
            return result
        x = x.to(self.lora_A.weight.dtype)
        dropped = self.dropout(x)
        update = self.lora_B(self.lora_A(dropped)) * self.scaling
        if self.lora_magnitude_vector is None:
            return (result + update).to(result.dtype)
        scale = self._magnitude_scale(x.dtype)
        if isinstance(self.dropout, nn.Identity) or not self.training:
            base = result if self.bias is None else result - self.bias
        else:
            base = self._base(dropped, bias=False)
        return (result + (scale - 1) * base + scale * update).to(result.dtype)

    def _magnitude_scale(self, dtype: torch.dtype) -> torch.Tensor:
        """m / ||W + s B A||_row with the norm detached (DoRA section 4.3)."""
        delta = (self.lora_B.weight @ self.lora_A.weight).detach().to(dtype)
        norm = torch.linalg.vector_norm(self.dense_weight(dtype) + self.scaling * delta, dim=1).detach()
        return self.lora_magnitude_vector / norm

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        """The plain weight that computes what this layer computes in eval mode, in the base weight's dtype."""
        weight = self.dense_weight(torch.float32)
        if self.lora_A is None:
            return weight.to(self.base_dtype)
        adapted = weight + self.scaling * (self.lora_B.weight.float() @ self.lora_A.weight.float())
        if self.lora_magnitude_vector is not None:
            norm = torch.linalg.vector_norm(adapted, dim=1, keepdim=True)
            adapted = self.lora_magnitude_vector.float().unsqueeze(1) / norm * adapted
        return adapted.to(self.base_dtype)

    def extra_repr(self) -> str:
        if self.lora_A is None:
            return f"{self.in_features}, {self.out_features}, no adapter installed, parked={sorted(self.parked)}"
        kind = ("q" if self.quantized is not None else "") + ("dora" if self.dora else "lora")
        name = f"{self.adapter_name!r}, " if self.adapter_name != DEFAULT_ADAPTER else ""
        return f"{self.in_features}, {self.out_features}, {name}{kind}, rank={self.rank}, alpha={self.alpha:g}"
