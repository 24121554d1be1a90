"""QLoRA's frozen base: linear layers whose weights are held in NF4 and dequantised to the compute dtype per call.

    quantize_base(model, compute_dtype=torch.bfloat16)   # every linear layer but the LM head -> NF4Linear
    apply_lora(model, config)                            # adapters over the NF4 layers, as over nn.Linear
    ...train...
    merge_lora(model); dequantize_base(model)            # plain nn.Linear layers again, for save_pretrained

The matmul is an autograd function that keeps only the 4-bit weight between forward and backward and dequantises
it again for the input's gradient (the weight itself takes none), so a layer holds no full-precision copy of its
weight outside the call, as bitsandbytes' `matmul_4bit` does. The NF4 format is `nf4.py`'s, the same bytes as
bitsandbytes' on every device; bf16 compute is QLoRA's, fp32 is allowed (CPU tests).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .nf4 import NF4Weight, dequantize_nf4, quantize_nf4

OUTPUT_HEAD = "lm_head"  # stays in full precision, as in QLoRA and peft's default


class _NF4Matmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: NF4Linear) -> torch.Tensor:
        ctx.layer = layer
        return F.linear(x, layer.dequantize(x.dtype))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None
        return grad @ ctx.layer.dequantize(grad.dtype), None


class NF4Linear(nn.Module):
    """A frozen ``nn.Linear`` in NF4. ``compute_dtype``: what the weight is dequantised to and the input cast to;
    ``weight_dtype``: the original weight's dtype, which ``dequantize_base`` restores."""

    def __init__(self, linear: nn.Linear, compute_dtype: torch.dtype) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.compute_dtype, self.weight_dtype = compute_dtype, linear.weight.dtype
        q = quantize_nf4(linear.weight)
        self.shape = q.shape
        for name, tensor in q.tensors().items():
            self.register_buffer(name, tensor)
        self.register_parameter("bias", linear.bias)
        if self.bias is not None:
            self.bias.requires_grad_(False)

    def quantized(self) -> NF4Weight:
        return NF4Weight(self.codes, self.absmax_codes, self.absmax_scales, self.absmax_offset, self.shape)

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        return dequantize_nf4(self.quantized(), dtype or self.compute_dtype)

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x W^T in the compute dtype, returned in x's dtype; gradient to x only."""
        return _NF4Matmul.apply(x.to(self.compute_dtype), self).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.matmul(x)
        return out if self.bias is None else out + self.bias.to(out.dtype)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, nf4, compute={self.compute_dtype}"


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, module)


def quantize_base(model: nn.Module, compute_dtype: torch.dtype = torch.bfloat16) -> list[str]:
    """Replaces every ``nn.Linear`` except the LM head with an ``NF4Linear``, in place, on the layers' devices; the
    full-precision weights are released. Returns the replaced paths. Call before ``apply_lora``."""
    names = [n for n, m in model.named_modules() if type(m) is nn.Linear and n != OUTPUT_HEAD]
    for name in names:
        _replace(model, name, NF4Linear(model.get_submodule(name), compute_dtype))
    return names


@torch.no_grad()
def dequantize_base(model: nn.Module) -> list[str]:
    """Every ``NF4Linear`` back to a frozen ``nn.Linear`` holding its dequantised weight (in the original dtype):
    the weights the adapters were trained against. Returns the replaced paths."""
    names = [n for n, m in model.named_modules() if isinstance(m, NF4Linear)]
    for name in names:
        layer = model.get_submodule(name)
        linear = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
        linear.weight = nn.Parameter(layer.dequantize(layer.weight_dtype), requires_grad=False)
        linear.bias = layer.bias
        _replace(model, name, linear)
    return names
