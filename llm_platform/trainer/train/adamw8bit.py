"""AdamW with 8-bit optimizer state, where neither bitsandbytes (CUDA) nor torchao is installed.

Each moment tensor is split into blocks of 256 values; a block stores one fp32 scale (its absolute maximum) and one
byte per value: the index of a 256-entry code book of values in [-1, 1]. The code book is spaced geometrically, as in
8-bit optimizers' dynamic quantization: moments span many orders of magnitude inside a block, and a linear grid would
round the small second moments to zero (and their updates to lr / eps). Because the spacing is geometric, the
nearest level in log space is an arithmetic expression (a log, a scale, a round), not a search. State memory drops
from 8 bytes per parameter to about 2.03. Tensors under 4096 values keep fp32 state: they are cheap, and norms and
biases are the most sensitive to rounding.

The step is vectorised: all quantized tensors of a parameter group are concatenated (each padded to whole blocks),
dequantized, updated and requantized as one flat tensor, and the small ones go through `torch._foreach_*` ops; the
only Python loop is over the parameter list, to gather and scatter. `bench/optim8bit.py` measures it against torch's
AdamW.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

BLOCK = 256
MIN_QUANTIZED_SIZE = 4096
# (decades below 1 of the smallest non-zero level, non-zero levels) of the signed and the unsigned code book
SIGNED, UNSIGNED = (4, 127), (8, 255)


def _signed_codebook() -> torch.Tensor:
    """0, and 127 geometric magnitudes from 1e-4 to 1 on each side (about 7.6% apart); code 255 repeats 1."""
    magnitudes = torch.logspace(-4, 0, 127, dtype=torch.float64)
    return torch.cat([-magnitudes.flip(0), torch.zeros(1, dtype=torch.float64), magnitudes, torch.ones(1)]).float()


def _unsigned_codebook() -> torch.Tensor:
    """0, and 255 geometric values from 1e-8 to 1 (second moments: squared gradients, wider range, never negative)."""
    return torch.cat([torch.zeros(1), torch.logspace(-8, 0, 255, dtype=torch.float64).float()])


def _level(magnitude: torch.Tensor, decades: int, levels: int) -> torch.Tensor:
    """For magnitudes in [0, 1]: 1 + the index of the nearest geometric level in log space, or 0 below the geometric
    midpoint of the smallest level and the one a step below it (zero is the nearest code there)."""
    steps_per_decade = (levels - 1) / decades
    level = magnitude.log10().mul_(steps_per_decade).add_(decades * steps_per_decade + 1).round_()
    return level.clamp_(0, levels)  # log10(0) = -inf -> 0


def _codes(normalized: torch.Tensor, signed: bool) -> torch.Tensor:
    """Code-book indices of values in [-1, 1] (signed) or [0, 1]."""
    if not signed:
        return _level(normalized, *UNSIGNED).to(torch.uint8)
    level = _level(normalized.abs(), *SIGNED)  # 0 for zero, else 1 + magnitude index
    return level.copysign_(normalized).add_(127).to(torch.uint8)  # -m_k at 126 - k, 0 at 127, m_k at 128 + k


def quantize(x: torch.Tensor, signed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 codes, fp32 per-block absmax scales) of `x`, padded to whole blocks."""
    flat = x.detach().float().flatten()
    if flat.numel() % BLOCK:
        flat = F.pad(flat, (0, -flat.numel() % BLOCK))
    flat = flat.view(-1, BLOCK)
    scales = flat.abs().amax(dim=1)
    normalized = flat * (1 / scales.clamp(min=1e-30))[:, None]
    return _codes(normalized.flatten(), signed), scales


def dequantize(codes: torch.Tensor, scales: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The flat fp32 values (padding included) that `codes` and `scales` stand for."""
    return (codebook[codes.long()].view(-1, BLOCK) * scales[:, None]).flatten()


class AdamW8bit(torch.optim.Optimizer):
    """Decoupled-weight-decay Adam (Loshchilov & Hutter) whose moments are stored block-quantized in 8 bits."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        self._codebooks: dict[tuple[bool, torch.device], torch.Tensor] = {}

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                self._init_state(p)
                self.state[p]["step"] += 1
            large = [p for p in params if p.numel() >= MIN_QUANTIZED_SIZE]
            small = [p for p in params if p.numel() < MIN_QUANTIZED_SIZE]
            if small:
                self._step_fp32(small, group)
            if large:
                self._step_quantized(large, group)
        return loss

    def _init_state(self, p: torch.Tensor) -> None:
        state = self.state[p]
        if state:
            return
        state["step"] = torch.zeros((), dtype=torch.float32)
        if p.numel() >= MIN_QUANTIZED_SIZE:
            blocks = math.ceil(p.numel() / BLOCK)
            state["exp_avg_codes"] = torch.full((blocks * BLOCK,), 127, dtype=torch.uint8, device=p.device)
            state["exp_avg_sq_codes"] = torch.zeros(blocks * BLOCK, dtype=torch.uint8, device=p.device)
            state["exp_avg_scales"] = torch.zeros(blocks, device=p.device)
            state["exp_avg_sq_scales"] = torch.zeros(blocks, device=p.device)
        else:
            state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
            state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)

    def _step_fp32(self, params: list[torch.Tensor], group: dict) -> None:
        beta1, beta2 = group["betas"]
        grads = [p.grad.float() for p in params]
        m = [self.state[p]["exp_avg"] for p in params]
        v = [self.state[p]["exp_avg_sq"] for p in params]
        torch._foreach_lerp_(m, grads, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
        steps = [self.state[p]["step"].item() for p in params]
        m_hat = torch._foreach_div(m, [1 - beta1**s for s in steps])
        denom = torch._foreach_sqrt(torch._foreach_div(v, [1 - beta2**s for s in steps]))
        torch._foreach_add_(denom, group["eps"])
        self._apply(params, torch._foreach_div(m_hat, denom), group)

    def _step_quantized(self, params: list[torch.Tensor], group: dict) -> None:
        beta1, beta2 = group["betas"]
        states = [self.state[p] for p in params]
        device = params[0].device
        grad = torch.cat([F.pad(p.grad.float().flatten(), (0, -p.numel() % BLOCK)) for p in params])
        m = dequantize(torch.cat([s["exp_avg_codes"] for s in states]),
                       torch.cat([s["exp_avg_scales"] for s in states]), self._codebook(True, device))  # fmt: skip
        v = dequantize(torch.cat([s["exp_avg_sq_codes"] for s in states]),
                       torch.cat([s["exp_avg_sq_scales"] for s in states]), self._codebook(False, device))  # fmt: skip
        m.lerp_(grad, 1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        blocks = [s["exp_avg_scales"].numel() for s in states]
        steps = torch.tensor([s["step"].item() for s in states], dtype=torch.float64)
        per_block = torch.tensor(blocks, device=device)
        bias1 = (1 - beta1**steps).float().to(device).repeat_interleave(per_block)[:, None]  # (blocks, 1)
        bias2 = (1 - beta2**steps).float().to(device).repeat_interleave(per_block)[:, None]
        denom = (v.view(-1, BLOCK) / bias2).sqrt_().add_(group["eps"])
        update = (m.view(-1, BLOCK) / bias1).div_(denom).flatten()
        m_codes, m_scales = quantize(m, signed=True)
        v_codes, v_scales = quantize(v, signed=False)
        sizes = [b * BLOCK for b in blocks]
        for s, mc, ms, vc, vs in zip(states, m_codes.split(sizes), m_scales.split(blocks), v_codes.split(sizes),
                                     v_scales.split(blocks), strict=True):  # fmt: skip
            s["exp_avg_codes"], s["exp_avg_scales"], s["exp_avg_sq_codes"], s["exp_avg_sq_scales"] = mc, ms, vc, vs
        chunks = [u[: p.numel()].view_as(p) for u, p in zip(update.split(sizes), params, strict=True)]
        self._apply(params, chunks, group)

    @staticmethod
    def _apply(params: list[torch.Tensor], updates: list[torch.Tensor], group: dict) -> None:
        """p <- p (1 - lr wd) - lr update."""
        if group["weight_decay"]:
            torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
        torch._foreach_add_(params, [u.to(p.dtype) for u, p in zip(updates, params, strict=True)], alpha=-group["lr"])

    def load_state_dict(self, state_dict) -> None:
        """torch casts loaded state to the parameter's dtype; the codes must stay bytes."""
        super().load_state_dict(state_dict)
        for state in self.state.values():
            for key in ("exp_avg_codes", "exp_avg_sq_codes"):
                if key in state:
                    state[key] = state[key].to(torch.uint8)

    def _codebook(self, signed: bool, device: torch.device) -> torch.Tensor:
        key = (signed, device)
        if key not in self._codebooks:
            self._codebooks[key] = (_signed_codebook() if signed else _unsigned_codebook()).to(device)
        return self._codebooks[key]

    def state_bytes(self) -> int:
        """Bytes of moment state held (fp32 AdamW holds 8 per parameter)."""
        return sum(
            t.numel() * t.element_size() for state in self.state.values() for key, t in state.items() if key != "step"
        )
