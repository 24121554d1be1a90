"""Token accuracy: how often the model's most likely next token is the one that follows."""

from __future__ import annotations

import torch


def token_accuracy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> tuple[int, int]:
    """(correct, counted) over every position whose target is not `ignore_index` (padding, prompt tokens of SFT data);
    a pair rather than a ratio, so batches add up exactly before one division."""
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match targets {tuple(targets.shape)} (..., vocab)")
    counted = targets != ignore_index
    correct = (logits.argmax(-1) == targets) & counted
    return int(correct.sum()), int(counted.sum())
