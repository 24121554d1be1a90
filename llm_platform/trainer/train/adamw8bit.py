"""AdamW with 8-bit optimizer state, for devices where bitsandbytes does not run (CPU, and as its fallback).

Each moment tensor is split into blocks of 256 values; a block stores one fp32 scale (its absolute maximum) and one
byte per value: the index of the nearest entry of a 256-entry codebook of values in [-1, 1]. The codebook is spaced
geometrically, as in 8-bit optimizers' dynamic quantization: moments span many orders of magnitude inside a block,
and a linear grid would round the small second moments to zero (and their updates to lr / eps). State memory drops
from 8 bytes per parameter to about 2.03. Tensors under 4096 values keep fp32 state: they are cheap, and norms
and biases are the most sensitive to rounding.
"""

from __future__ import annotations

import math

import torch

BLOCK = 256
MIN_QUANTIZED_SIZE = 4096


def _signed_codebook() -> torch.Tensor:
    """0, and 127 geometric magnitudes from 1e-4 to 1 on each side (about 7.6% apart)."""
    magnitudes = torch.logspace(-4, 0, 127, dtype=torch.float64)
    return torch.cat([-magnitudes.flip(0), torch.zeros(1, dtype=torch.float64), magnitudes, torch.ones(1)]).float()


def _unsigned_codebook() -> torch.Tensor:
    """0, and 255 geometric values from 1e-8 to 1 (second moments: squared gradients, wider range, never negative)."""
    return torch.cat([torch.zeros(1), torch.logspace(-8, 0, 255, dtype=torch.float64).float()])


def quantize(x: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 codes, fp32 per-block absmax scales) of `x`, padded to whole blocks."""
    blocks = math.ceil(x.numel() / BLOCK)
    flat = torch.zeros(blocks * BLOCK, dtype=torch.float32, device=x.device)
    flat[: x.numel()] = x.flatten()
    flat = flat.view(blocks, BLOCK)
    scales = flat.abs().amax(dim=1)
    normalized = flat / scales.clamp(min=1e-30)[:, None]
    midpoints = (codebook[1:] + codebook[:-1]) / 2
    return torch.bucketize(normalized.flatten(), midpoints).to(torch.uint8), scales


def dequantize(codes: torch.Tensor, scales: torch.Tensor, codebook: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    values = codebook[codes.long()].view(-1, BLOCK) * scales[:, None]
    return values.flatten()[: like.numel()].view(like.shape)


class AdamW8bit(torch.optim.Optimizer):
    """Decoupled-weight-decay Adam (Loshchilov & Hutter) whose moments are stored block-quantized in 8 bits."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        self._codebooks: dict[tuple[str, torch.device], torch.Tensor] = {}

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.float()
                state = self.state[p]
                quantized = p.numel() >= MIN_QUANTIZED_SIZE
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    zeros = torch.zeros_like(p, dtype=torch.float32)
                    if quantized:
                        state["exp_avg_codes"], state["exp_avg_scales"] = quantize(zeros, self._codebook(p, True))
                        state["exp_avg_sq_codes"], state["exp_avg_sq_scales"] = quantize(zeros, self._codebook(p))
                    else:
                        state["exp_avg"], state["exp_avg_sq"] = zeros, zeros.clone()
                state["step"] += 1
                step = state["step"].item()
                if quantized:
                    m = dequantize(state["exp_avg_codes"], state["exp_avg_scales"], self._codebook(p, True), p)
                    v = dequantize(state["exp_avg_sq_codes"], state["exp_avg_sq_scales"], self._codebook(p), p)
                else:
                    m, v = state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(grad, 1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                if quantized:
                    state["exp_avg_codes"], state["exp_avg_scales"] = quantize(m, self._codebook(p, True))
                    state["exp_avg_sq_codes"], state["exp_avg_sq_scales"] = quantize(v, self._codebook(p))
                bias1 = 1 - beta1**step
                bias2 = 1 - beta2**step
                denom = (v / bias2).sqrt_().add_(group["eps"])
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.addcdiv_((m / bias1).to(p.dtype), denom.to(p.dtype), value=-group["lr"])
        return loss

    def load_state_dict(self, state_dict) -> None:
        """torch casts loaded state to the parameter's dtype; the codes must stay bytes."""
        super().load_state_dict(state_dict)
        for state in self.state.values():
            for key in ("exp_avg_codes", "exp_avg_sq_codes"):
                if key in state:
                    state[key] = state[key].to(torch.uint8)

    def _codebook(self, p: torch.Tensor, signed: bool = False) -> torch.Tensor:
        key = ("signed" if signed else "unsigned", p.device)
        if key not in self._codebooks:
            self._codebooks[key] = (_signed_codebook() if signed else _unsigned_codebook()).to(p.device)
        return self._codebooks[key]

    def state_bytes(self) -> int:
        """Bytes of moment state held (fp32 AdamW holds 8 per parameter)."""
        return sum(
            t.numel() * t.element_size() for state in self.state.values() for key, t in state.items() if key != "step"
        )
