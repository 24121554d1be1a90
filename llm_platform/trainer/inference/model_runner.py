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

from .decode_graphs import DecodeGraphs
from .lora import MultiLora
from .paged_cache import PagedBatch, PagedKVCache, batch_layout, long_tensor
from .scheduler import ScheduledSequence
from .sequence import Sequence


def split_padding(group: list[ScheduledSequence], max_waste: float = 2.0) -> list[list[ScheduledSequence]]:
    """Splits rows (longest first) into batches whose padded size stays within ``max_waste`` x their real tokens,
    so a long prefill chunk does not pad many short ones to its length."""
    if all(s.num_tokens == 1 for s in group):  # decodes: one batch, no padding
        return [group]
    batches: list[list[ScheduledSequence]] = []
    real = 0  # tokens in the current (last) batch
    for item in sorted(group, key=lambda s: -s.num_tokens):
        current = batches[-1] if batches else None
        if current is not None and (len(current) + 1) * current[0].num_tokens <= max_waste * (real + item.num_tokens):
            current.append(item)
            real += item.num_tokens
            continue
        batches.append([item])
        real = item.num_tokens
    return batches


class ModelRunner:
    """graphs: replays decode batches from CUDA graphs (``decode_graphs``); None runs every batch eagerly."""

    def __init__(
        self, model: Transformer, cache: PagedKVCache, lora: MultiLora | None = None, graphs: DecodeGraphs | None = None
    ) -> None:
        self.model = model
        self.cache = cache
        self.lora = lora
        self.graphs = graphs if lora is None else None
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def execute(self, scheduled: list[ScheduledSequence]) -> tuple[list[Sequence], torch.Tensor | None]:
        """Runs every scheduled sequence's tokens; returns the sequences that draw a token this step and their
        last-position logits [N, V] (one tensor for the whole step, rows in that order), or None when none draws."""
        drawing: list[Sequence] = []
        outputs: list[torch.Tensor] = []

        def key(s: ScheduledSequence) -> tuple[str, bool]:
            return (s.seq.adapter or "", s.num_tokens > 1)

        for (adapter, _), group in groupby(sorted(scheduled, key=key), key=key):
            if self.lora is not None:
                self.lora.activate(adapter or None)
            for batch in split_padding(list(group)):
                rows, logits = self._forward(batch)
                drawing += rows
                if logits is not None:
                    outputs.append(logits)
        if self.lora is not None:
            self.lora.activate(None)
        if not outputs:
            return drawing, None
        return drawing, outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    def _forward(self, group: list[ScheduledSequence]) -> tuple[list[Sequence], torch.Tensor | None]:
        if self.graphs is not None and self.graphs.supports(group):
            logits = self.graphs.run(group)
            if logits is not None:
                return [s.seq for s in group], logits
        width = max(s.num_tokens for s in group)
        ids: list[int] = []
        for s in group:
            start, n = s.seq.num_computed, s.num_tokens
            ids += s.seq.token_slice(start, start + n)
            ids += [0] * (width - n)
        rows = [(s.seq.blocks, s.seq.num_computed, s.num_tokens) for s in group]
        batch = PagedBatch(self.cache, batch_layout(self.cache, rows, width).to(self.device))
        inputs = long_tensor(ids).view(len(group), width)
        end = max(s.seq.num_computed + s.num_tokens for s in group)
        hidden = self.model.hidden_states(
            inputs.to(self.device), cache=batch, positions=batch.positions, rope_end=end
        )  # (B, T, dim)
        drawing = [row for row, s in enumerate(group) if s.samples]
        if not drawing:
            return [], None
        if width == 1 and len(drawing) == len(group):  # decode: every row draws, at its only position
            return [s.seq for s in group], self.model.lm_head(hidden[:, 0])
        last = torch.tensor([group[row].num_tokens - 1 for row in drawing])
        picked = hidden[torch.tensor(drawing, device=self.device), last.to(self.device)]  # (N, dim)
        return [group[row].seq for row in drawing], self.model.lm_head(picked)
