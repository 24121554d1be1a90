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


REWARD_KEYS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")
"""What DPO logs besides its loss, under TRL's names: the mean implicit reward of the chosen and of the rejected
responses, the share of pairs whose chosen reward is the higher, and the mean margin between the two."""


def reward_sums(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Summed over the pairs, in `REWARD_KEYS` order: the implicit rewards r = beta * (pi - ref) of the chosen and
    the rejected responses, the count of pairs with r_chosen > r_rejected, and the summed margins r_chosen -
    r_rejected. Sums (not means) so batches of any size add up; divide by the pair count."""
    chosen = beta * (policy_chosen.detach().float() - reference_chosen.float())
    rejected = beta * (policy_rejected.detach().float() - reference_rejected.float())
    return torch.stack([chosen.sum(), rejected.sum(), (chosen > rejected).float().sum(), (chosen - rejected).sum()])


class DPOLoss(nn.Module):
    """The engine's objective for DPO: forward(batch) -> loss, where a batch holds the chosen and the rejected
    sequences stacked in one [2B, T] tensor (`input_ids`, `labels`: the first B rows chosen) and the reference
    log-probabilities `reference_logps` [2B] in the same order. One forward for both halves.

    It also adds up the rewards of the pairs it sees, apart for training and evaluation forwards (`self.training`),
    on the device (no sync per step); `take_rewards("train")` gives their means since the last call and starts
    over, so a log record carries the rewards of the steps since the previous record. Per process: under several
    processes each rank reports its own share."""

    def __init__(self, model: nn.Module, beta: float) -> None:
        super().__init__()
        self.model = model
        self.beta = beta
        self._sums: dict[str, torch.Tensor] = {}
        self._pairs: dict[str, int] = {}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logps = sequence_logps(self.model(batch["input_ids"]), batch["labels"])
        chosen, rejected = logps.chunk(2)
        ref_chosen, ref_rejected = batch["reference_logps"].chunk(2)
        loss, _ = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, self.beta)
        mode = "train" if self.training else "val"
        sums = reward_sums(chosen, rejected, ref_chosen, ref_rejected, self.beta)
        self._sums[mode] = self._sums[mode] + sums if mode in self._sums else sums
        self._pairs[mode] = self._pairs.get(mode, 0) + chosen.numel()
        return loss

    def take_rewards(self, mode: str) -> dict[str, float]:
        """Mean rewards over the pairs seen in `mode` ("train" or "val") since the last call; {} if none."""
        sums, pairs = self._sums.pop(mode, None), self._pairs.pop(mode, 0)
        if sums is None or not pairs:
            return {}
        return {key: value / pairs for key, value in zip(REWARD_KEYS, sums.cpu().tolist(), strict=True)}


@torch.no_grad()
def reference_logps(model: nn.Module, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The starting model's summed log-probabilities of a batch of sequences (computed once, before training)."""
    was_training = model.training
    model.eval()
    try:
        return sequence_logps(model(input_ids), labels)
    finally:
        model.train(was_training)
