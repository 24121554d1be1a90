"""Executing a step: the scheduled sequences' new tokens through the model, over the paged cache.

Sequences are batched by kind (decoding one token, or prefilling a chunk) and by adapter, each batch a padded
[B, T] forward with per-row positions, so one long prefill chunk does not pad the decodes to its length (and
prefill chunks of very different lengths go in separate forwards). Only the
rows that draw a token this step go through the LM head, at their last position.
"""

from __future__ import annotations

from itertools import groupby

import torch

from llm_platform.trainer.model.transformer import Transformer

from .lora import MultiLora
from .paged_cache import PagedBatch, PagedKVCache
from .scheduler import ScheduledSequence


def split_padding(group: list[ScheduledSequence], max_waste: float = 2.0) -> list[list[ScheduledSequence]]:
    """Splits rows (longest first) into batches whose padded size stays within ``max_waste`` x their real tokens,
    so a long prefill chunk does not pad many short ones to its length."""
    batches: list[list[ScheduledSequence]] = []
    for item in sorted(group, key=lambda s: -s.num_tokens):
        current = batches[-1] if batches else None
        if current is not None:
            real = sum(s.num_tokens for s in current) + item.num_tokens
            if (len(current) + 1) * current[0].num_tokens <= max_waste * real:
                current.append(item)
                continue
        batches.append([item])
    return batches


class ModelRunner:
    def __init__(self, model: Transformer, cache: PagedKVCache, lora: MultiLora | None = None) -> None:
        self.model = model
        self.cache = cache
        self.lora = lora
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def execute(self, scheduled: list[ScheduledSequence]) -> dict[int, torch.Tensor]:
        """Runs every scheduled sequence's tokens; returns last-position logits [V] per seq_id of the sequences
        that draw a token this step."""
        logits: dict[int, torch.Tensor] = {}

        def key(s: ScheduledSequence) -> tuple[str, bool]:
            return (s.seq.adapter or "", s.num_tokens > 1)

        for (adapter, _), group in groupby(sorted(scheduled, key=key), key=key):
            if self.lora is not None:
                self.lora.activate(adapter or None)
            for batch in split_padding(list(group)):
                logits |= self._forward(batch)
        if self.lora is not None:
            self.lora.activate(None)
        return logits

    def _forward(self, group: list[ScheduledSequence]) -> dict[int, torch.Tensor]:
        width = max(s.num_tokens for s in group)
        ids = torch.zeros(len(group), width, dtype=torch.long)
        positions = torch.zeros(len(group), width, dtype=torch.long)
        for row, s in enumerate(group):
            start, n = s.seq.num_computed, s.num_tokens
            ids[row, :n] = torch.as_tensor(s.seq.token_slice(start, start + n))
            positions[row, :n] = torch.arange(start, start + n)
            positions[row, n:] = start + n - 1  # padding queries look at real keys (no empty softmax rows)
        batch = PagedBatch(self.cache, [(s.seq.blocks, s.seq.num_computed, s.num_tokens) for s in group], width)
        hidden = self.model.hidden_states(ids.to(self.device), cache=batch, positions=positions.to(self.device))
        rows = [row for row, s in enumerate(group) if s.samples]
        if not rows:
            return {}
        last = torch.tensor([group[row].num_tokens - 1 for row in rows], device=self.device)
        out = self.model.lm_head(hidden[torch.tensor(rows, device=self.device), last])
        return {group[row].seq.seq_id: out[i] for i, row in enumerate(rows)}
