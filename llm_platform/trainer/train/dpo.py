"""Direct Preference Optimization (Rafailov et al., 2023): learn from (prompt, chosen, rejected) pairs without a reward
model, by raising the policy's log-likelihood ratio to a frozen reference on the chosen response over the rejected.

    loss = -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))

where pi_c is the policy's summed log-probability of the chosen response's tokens (prompt tokens excluded) and ref_c
the reference's. The reference log-probabilities are computed once, before training, from the starting model
(`reference_logps`), so training holds one model in memory and the reference never drifts. At the first step the
policy is the reference, every margin is 0 and the loss is exactly log 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .loss import IGNORE_INDEX


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum over each row of log p(label) for the scored labels (not IGNORE_INDEX): [B, T, V], [B, T] -> [B]."""
    scored = labels != IGNORE_INDEX
    safe = labels.masked_fill(~scored, 0)
    logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return (logps * scored).sum(-1)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, per-pair margins beta * (chosen log-ratio - rejected log-ratio)); a positive margin means the
    policy prefers the chosen response more than the reference did."""
    margins = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected))
    return -F.logsigmoid(margins).mean(), margins


class DPOLoss(nn.Module):
    """The engine's objective for DPO: forward(batch) -> loss, where a batch holds the chosen and the rejected
    sequences stacked in one [2B, T] tensor (`input_ids`, `labels`: the first B rows chosen) and the reference
    log-probabilities `reference_logps` [2B] in the same order. One forward for both halves."""

    def __init__(self, model: nn.Module, beta: float) -> None:
        super().__init__()
        self.model = model
        self.beta = beta

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logps = sequence_logps(self.model(batch["input_ids"]), batch["labels"])
        chosen, rejected = logps.chunk(2)
        ref_chosen, ref_rejected = batch["reference_logps"].chunk(2)
        loss, _ = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, self.beta)
        return loss


@torch.no_grad()
def reference_logps(model: nn.Module, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The starting model's summed log-probabilities of a batch of sequences (computed once, before training)."""
    was_training = model.training
    model.eval()
    try:
        return sequence_logps(model(input_ids), labels)
    finally:
        model.train(was_training)
