"""Next-token loss: cross-entropy over the vocabulary with an ignore index and an optional z-loss.

`linear_cross_entropy` fuses the LM head with the loss: it runs chunk by chunk over the tokens and computes each
chunk's gradients (with respect to the hidden states and the head weight) in the forward pass, so neither the full
[tokens, vocab] logits nor their fp32 copy, softmax and gradient ever exist at once, and nothing is recomputed. At a
32K vocabulary the fp32 logits of a 16 x 2048 batch are 4 GiB, the largest activation of a 125M model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llm_platform.trainer.model.fused_ops import output_dtype

IGNORE_INDEX = -100


def lm_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    z_loss: float = 0.0,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Mean cross-entropy of logits [..., V] against targets [...] over the non-ignored tokens, plus
    `z_loss * mean(logsumexp(logits)^2)` (PaLM), which keeps the softmax normaliser near 1."""
    flat = logits.reshape(-1, logits.size(-1)).float()
    flat_targets = targets.reshape(-1)
    loss = F.cross_entropy(flat, flat_targets, ignore_index=ignore_index)
    if z_loss:
        keep = flat_targets != ignore_index
        lse = torch.logsumexp(flat, dim=-1)
        loss = loss + z_loss * (lse.square() * keep).sum() / keep.sum().clamp(min=1)
    return loss


class _LinearCrossEntropy(torch.autograd.Function):
    """Mean over kept rows of logsumexp(h W^T) - (h W^T)[target] + z * logsumexp^2; gradients made in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, z_loss: float, ignore_index: int, chunk: int):
        keep = targets != ignore_index
        count = keep.sum().clamp(min=1).float()
        safe_targets = targets.masked_fill(~keep, 0)
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros_like(weight, dtype=torch.float32)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.size(0), chunk):
            rows = slice(start, start + chunk)
            h, t, k = hidden[rows], safe_targets[rows], keep[rows]
            logits = (h @ weight.t()).float()
            lse = torch.logsumexp(logits, dim=-1)
            picked = logits.gather(1, t[:, None]).squeeze(1)
            total += ((lse - picked + z_loss * lse.square()) * k).sum()
            # d/dlogits: softmax * (1 + 2 z lse) - onehot(target), for kept rows, over the kept-row count.
            grad = torch.exp(logits - lse[:, None]) * (1 + 2 * z_loss * lse)[:, None]
            grad.scatter_add_(1, t[:, None], torch.full_like(lse[:, None], -1.0))
            grad = (grad * (k.float() / count)[:, None]).to(h.dtype)
            grad_hidden[rows] = grad @ weight
            grad_weight += (grad.t() @ h).float()
        ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        return total / count

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_output, grad_weight * grad_output, None, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    head_weight: torch.Tensor,
    targets: torch.Tensor,
    z_loss: float = 0.0,
    ignore_index: int = IGNORE_INDEX,
    chunk_tokens: int = 8192,
) -> torch.Tensor:
    """Same value and gradients as `lm_loss(hidden @ head_weight.T, targets, z_loss)`, computed `chunk_tokens` rows
    at a time. Under autocast the matmuls run in the autocast dtype, as the unfused LM head's would."""
    flat = hidden.reshape(-1, hidden.size(-1))
    dtype = output_dtype(flat)
    with torch.autocast(flat.device.type, enabled=False):
        return _LinearCrossEntropy.apply(
            flat.to(dtype), head_weight.to(dtype), targets.reshape(-1), z_loss, ignore_index, chunk_tokens
        )
