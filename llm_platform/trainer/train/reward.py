"""A reward model: a Bradley–Terry head on the decoder's final hidden state, trained on preference pairs.

Bradley–Terry models the chance that a person prefers response c over r as sigmoid(r(c) - r(r)), so training
minimises -log sigmoid(reward(chosen) - reward(rejected)) (as InstructGPT's reward model does). The reward of a
sequence is a linear map of the final-norm hidden state at its last real token: the one position that has read the
whole prompt and response. The head is initialised at zero, so every reward starts at 0 and the first loss is
exactly log 2.

    reward = RewardModel(load_pretrained("sft/model"))
    loss = RewardLoss(reward)(batch)          # batch: chosen rows then rejected rows ([2B, T]), attention_mask
    scores = reward.score(input_ids, attention_mask)     # [B] floats, no gradient
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RewardModel(nn.Module):
    """A decoder (anything with ``hidden_states(input_ids)`` and ``config.dim``) plus a scalar head."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder
        weight = next(decoder.parameters())
        self.head = nn.Linear(decoder.config.dim, 1, device=weight.device, dtype=torch.float32)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Rewards [B] of right-padded rows [B, T]; attention_mask marks the real tokens (1)."""
        hidden = self.decoder.hidden_states(input_ids)  # (B, T, dim)
        last = attention_mask.long().sum(dim=1).clamp(min=1) - 1
        final = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, dim)
        return self.head(final.float()).squeeze(-1)

    @torch.no_grad()
    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Rewards [B] for scoring (eval mode for the call, no gradient); no mask: every token is real."""
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        was_training = self.training
        self.eval()
        try:
            return self(input_ids, mask)
        finally:
            self.train(was_training)


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean -log sigmoid(chosen - rejected), share of pairs where chosen scores higher)."""
    margin = chosen - rejected
    return -F.logsigmoid(margin).mean(), (margin > 0).float().mean()


class RewardLoss(nn.Module):
    """The engine's objective for reward modelling: a batch holds the chosen rows then the rejected rows ([2B, T]
    ``input_ids`` and ``attention_mask``, as ``collate_pairs`` builds them); one forward for both halves."""

    def __init__(self, reward: RewardModel) -> None:
        super().__init__()
        self.reward = reward

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        chosen, rejected = self.reward(batch["input_ids"], batch["attention_mask"]).chunk(2)
        loss, _ = bradley_terry_loss(chosen, rejected)
        return loss


@torch.no_grad()
def pair_accuracy(reward: RewardModel, batches: list[dict[str, torch.Tensor]]) -> float:
    """Share of held-out pairs whose chosen response gets the higher reward."""
    right = total = 0
    for batch in batches:
        chosen, rejected = reward.score(batch["input_ids"], batch["attention_mask"]).chunk(2)
        right += int((chosen > rejected).sum())
        total += chosen.numel()
    if total == 0:
        raise ValueError("pair_accuracy: no held-out pairs")
    return right / total
