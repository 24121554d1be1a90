"""What the engine trains: a module whose forward takes one micro-batch and returns its loss.

Putting the loss inside a module's forward lets DDP, FSDP2 and torch.compile see the whole step: FSDP2 unshards the
root parameters (embedding, final norm, LM head) around this forward, so the fused loss may read the LM head
weight directly, and a compiled graph can fuse the loss with the head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llm_platform.trainer.model.document_mask import DocumentMask, document_ids_from_eos, positions_in_documents

from .loss import IGNORE_INDEX, linear_cross_entropy, lm_loss


class NextTokenLoss(nn.Module):
    """Causal LM loss on batches of token windows [B, T + 1] (pretraining), or on dicts with `input_ids` and
    `labels` [B, T] already shifted, where labels equal to -100 are not scored (fine-tuning loss masks).

    In training mode adds the model's MoE load-balancing loss; in eval mode returns the language-model loss alone.
    `fused_loss` fuses the LM head with the loss, chunk by chunk (`loss.linear_cross_entropy`); it needs a model with
    `hidden_states` and `lm_head` (our `Transformer`).

    Packed documents: with `eos_id`, attention in token windows stops at each end-of-sequence token; dict batches
    that carry `document_ids` (packed fine-tuning rows) are always masked by them. `reset_positions` restarts the
    rotary positions at every document (a dict batch's `position_ids`, else computed from the ids).
    `context_parallel`: a `ContextParallel` that shards each sequence across its process group; the loss is this
    shard's mean, which the data-parallel gradient average turns into the whole sequence's.
    `offload_activations`: tensors the backward pass needs wait in pinned CPU memory instead of on the device
    (`torch.autograd.graph.save_on_cpu`); it pays off with `selective` or no activation checkpointing, since under
    `full` the blocks save almost nothing.
    """

    def __init__(
        self,
        model: nn.Module,
        z_loss: float = 0.0,
        fused_loss: bool = False,
        *,
        eos_id: int | None = None,
        reset_positions: bool = False,
        context_parallel=None,
        offload_activations: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.z_loss = z_loss
        self.fused_loss = fused_loss
        self.eos_id = eos_id
        self.reset_positions = reset_positions
        self.context_parallel = context_parallel
        self.offload_activations = offload_activations

    def forward(self, batch: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        if self.offload_activations and self.training and torch.is_grad_enabled():
            with torch.autograd.graph.save_on_cpu(pin_memory=True):
                return self._loss(batch)
        return self._loss(batch)

    def _loss(self, batch: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        documents = None
        if isinstance(batch, dict):
            inputs, targets = batch["input_ids"], batch["labels"]
            documents = batch.get("document_ids")
        else:
            inputs, targets = batch[:, :-1], batch[:, 1:]
            if self.eos_id is not None:
                documents = document_ids_from_eos(inputs, self.eos_id)
        extra = {}
        if documents is not None:
            extra["attend"] = DocumentMask(documents)
            if self.reset_positions:
                positions = batch.get("position_ids") if isinstance(batch, dict) else None
                extra["positions"] = positions_in_documents(documents) if positions is None else positions
                extra["rope_end"] = inputs.shape[1]
        elif self.context_parallel is not None and self.training:  # evaluation runs whole sequences
            inputs, targets, extra = self.context_parallel.shard(inputs, targets)
        if self.has_head:
            hidden = self.model.hidden_states(inputs, **extra)
            loss = self.head_loss(hidden, self.model.lm_head.weight, targets)
        else:
            extra.pop("rope_end", None)
            loss = lm_loss(self.model(inputs, **extra), targets, self.z_loss, IGNORE_INDEX)
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
