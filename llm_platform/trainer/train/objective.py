"""What the engine trains: a module whose forward takes one micro-batch and returns its loss.

Putting the loss inside a module's forward lets DDP, FSDP2 and torch.compile see the whole step: FSDP2 unshards the
root parameters (embedding, final norm, LM head) around this forward, so the fused loss may read the LM head
weight directly, and a compiled graph can fuse the loss with the head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .loss import IGNORE_INDEX, linear_cross_entropy, lm_loss


class NextTokenLoss(nn.Module):
    """Causal LM loss on batches of token windows [B, T + 1] (pretraining), or on dicts with `input_ids` and
    `labels` [B, T] already shifted, where labels equal to -100 are not scored (fine-tuning loss masks).

    In training mode adds the model's MoE load-balancing loss; in eval mode returns the language-model loss alone.
    `fused_loss` fuses the LM head with the loss, chunk by chunk (`loss.linear_cross_entropy`); it needs a model with
    `hidden_states` and `lm_head` (our `Transformer`).
    """

    def __init__(self, model: nn.Module, z_loss: float = 0.0, fused_loss: bool = False) -> None:
        super().__init__()
        self.model = model
        self.z_loss = z_loss
        self.fused_loss = fused_loss

    def forward(self, batch: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        if isinstance(batch, dict):
            inputs, targets = batch["input_ids"], batch["labels"]
        else:
            inputs, targets = batch[:, :-1], batch[:, 1:]
        if self.has_head:
            loss = self.head_loss(self.model.hidden_states(inputs), self.model.lm_head.weight, targets)
        else:
            loss = lm_loss(self.model(inputs), targets, self.z_loss, IGNORE_INDEX)
        aux = getattr(self.model, "aux_loss", None)
        return loss + aux() if self.training and aux is not None else loss

    @property
    def has_head(self) -> bool:
        """Whether the model exposes its hidden states and LM head (ours does) so the head can join the loss."""
        return hasattr(self.model, "hidden_states") and hasattr(self.model, "lm_head")

    def head_loss(self, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.fused_loss:
            return linear_cross_entropy(hidden, weight, targets, self.z_loss, IGNORE_INDEX)
        return lm_loss(F.linear(hidden, weight), targets, self.z_loss, IGNORE_INDEX)

    def compile_head(self) -> None:
        """torch.compile the LM head + loss as one graph (the blocks are compiled on their own)."""
        self.head_loss = torch.compile(self.head_loss)
