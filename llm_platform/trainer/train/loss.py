"""Next-token loss: cross-entropy over the vocabulary with an ignore index and an optional z-loss.

`chunked_lm_loss` never materialises the full [tokens, vocab] logits in fp32: it runs the LM head and the
cross-entropy chunk by chunk, recomputing each chunk's logits in the backward pass. At 32K vocabularies the fp32
logits of a 16 x 2048 batch are 4 GiB, most of the activation memory of a 125M model and a large share of its time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

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


def _chunk_sums(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, z_loss: float, ignore_index: int
) -> torch.Tensor:
    logits = (hidden @ weight.t()).float()
    ce = F.cross_entropy(logits, targets, ignore_index=ignore_index, reduction="sum")
    if not z_loss:
        return ce
    keep = targets != ignore_index
    return ce + z_loss * (torch.logsumexp(logits, dim=-1).square() * keep).sum()


def chunked_lm_loss(
    hidden: torch.Tensor,
    head_weight: torch.Tensor,
    targets: torch.Tensor,
    z_loss: float = 0.0,
    ignore_index: int = IGNORE_INDEX,
    chunk_tokens: int = 8192,
) -> torch.Tensor:
    """Same value as `lm_loss(hidden @ head_weight.T, targets)`, computed `chunk_tokens` rows at a time."""
    flat = hidden.reshape(-1, hidden.size(-1))
    flat_targets = targets.reshape(-1)
    count = (flat_targets != ignore_index).sum().clamp(min=1)
    total = flat.new_zeros((), dtype=torch.float32)
    for start in range(0, flat.size(0), chunk_tokens):
        rows = slice(start, start + chunk_tokens)
        total = total + checkpoint(
            _chunk_sums, flat[rows], head_weight, flat_targets[rows], z_loss, ignore_index, use_reentrant=False
        )
    return total / count
