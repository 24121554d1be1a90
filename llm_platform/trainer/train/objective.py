"""What the engine trains: a module whose forward takes one micro-batch and returns its loss.

Putting the loss inside a module's forward lets DDP, FSDP2 and torch.compile see the whole step: FSDP2 unshards the
root parameters (embedding, final norm, LM head) around this forward, so the chunked loss may read the LM head
weight directly, and a compiled graph can fuse the loss with the head.
"""

from __future__ import annotations

import torch
from torch import nn

from .loss import IGNORE_INDEX, chunked_lm_loss, lm_loss


class NextTokenLoss(nn.Module):
    """Causal LM loss on batches of token windows [B, T + 1] (pretraining), or on dicts with `input_ids` and
    `labels` [B, T] already shifted, where labels equal to -100 are not scored (fine-tuning loss masks).

    In training mode adds the model's MoE load-balancing loss; in eval mode returns the language-model loss alone.
    `chunked` computes the LM head and cross-entropy in chunks (`loss.chunked_lm_loss`); it needs a model with
    `hidden_states` and `lm_head` (our `Transformer`).
    """

    def __init__(self, model: nn.Module, z_loss: float = 0.0, chunked: bool = False) -> None:
        super().__init__()
        self.model = model
        self.z_loss = z_loss
        self.chunked = chunked

    def forward(self, batch: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        if isinstance(batch, dict):
            inputs, targets = batch["input_ids"], batch["labels"]
        else:
            inputs, targets = batch[:, :-1], batch[:, 1:]
        if self.chunked:
            hidden = self.model.hidden_states(inputs)
            loss = chunked_lm_loss(hidden, self.model.lm_head.weight, targets, self.z_loss, IGNORE_INDEX)
        else:
            loss = lm_loss(self.model(inputs), targets, self.z_loss, IGNORE_INDEX)
        aux = getattr(self.model, "aux_loss", None)
        return loss + aux() if self.training and aux is not None else loss
