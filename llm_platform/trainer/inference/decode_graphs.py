"""Decode steps replayed from CUDA graphs: one graph per (batch bucket, key-block bucket), static input buffers.

A decode step of a small model on a big GPU is hundreds of tiny kernels; launching them from Python costs more than
running them. So a decode batch (every row one token, every row drawing) is padded to the next bucket of rows
(1, 2, 4, ... up to max_num_seqs) and of block-table width (powers of two up to the context), copied into that
bucket's static buffers (ids, positions, slot mappings, block tables, key positions), and the whole forward up to the
LM head is replayed as one graph. Padding rows write into the null block and attend to one of its slots (never an
empty softmax row); padding table entries are the null block, and their keys are masked (position -1), so the real
rows compute exactly what the eager path computes.

On CPU nothing is captured: the same padded static-shape step runs eagerly, which is how the padding and bucketing
are tested. Prefill chunks, LoRA batches and MoE models stay on the eager path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llm_platform.trainer.model.transformer import Transformer

from .paged_cache import NULL_BLOCK, BatchLayout, PagedBatch, PagedKVCache, batch_layout
from .scheduler import ScheduledSequence


def buckets(limit: int, smallest: int = 1) -> list[int]:
    """Powers of two from ``smallest`` while below ``limit``, then ``limit`` itself (the largest bucket)."""
    sizes = []
    size = smallest
    while size < limit:
        sizes.append(size)
        size *= 2
    return [*sizes, limit]


def bucket_for(n: int, sizes: list[int]) -> int | None:
    """The smallest bucket holding n, or None when n is past the largest."""
    return next((size for size in sizes if size >= n), None)


def pad_layout(layout: BatchLayout, rows: int) -> BatchLayout:
    """The decode layout of B rows padded to ``rows``: padding rows sit at position 0, write into the null block's
    slot 0 and attend to that one key only (finite, and never read by a real row, whose tables mask the null
    block)."""
    real = layout.positions.shape[0]
    extra = rows - real
    if extra == 0:
        return layout
    positions = torch.cat([layout.positions, torch.zeros(extra, 1, dtype=torch.long)])
    slots = [torch.cat([s, torch.full((extra,), NULL_BLOCK, dtype=torch.long)]) for s in layout.slots]
    tables = [torch.cat([t, torch.full((extra, t.shape[1]), NULL_BLOCK, dtype=torch.long)]) for t in layout.tables]
    key_positions = []
    for k in layout.key_positions:
        pad = torch.full((extra, k.shape[1]), -1, dtype=torch.long)
        pad[:, 0] = 0
        key_positions.append(torch.cat([k, pad]))
    return BatchLayout(positions, slots, tables, key_positions)


@dataclass
class _Buffers:
    """A bucket's static inputs (and, once captured, its graph and output)."""

    ids: torch.Tensor  # (B, 1)
    layout: BatchLayout
    graph: torch.cuda.CUDAGraph | None = None
    logits: torch.Tensor | None = None  # (B, V), the graph's output buffer


class DecodeGraphs:
    """Runs decode batches as padded static-shape steps, captured in CUDA graphs on CUDA
    (``EngineConfig.cuda_graphs``)."""

    def __init__(self, model: Transformer, cache: PagedKVCache, *, max_num_seqs: int, max_model_len: int) -> None:
        self.model = model
        self.cache = cache
        self.device = next(model.parameters()).device
        self.capture = self.device.type == "cuda"
        self.max_model_len = max_model_len
        self.batch_sizes = buckets(max_num_seqs)
        self.block_counts = buckets(-(-max_model_len // cache.block_size), smallest=16)
        self.pool = torch.cuda.graph_pool_handle() if self.capture else None
        self.buffers: dict[tuple[int, int], _Buffers] = {}
        rotary = model.rotary
        self.enabled = (
            not model.moe_layers()
            and (rotary is None or max_model_len <= rotary.cos_half.shape[0])
            and next(model.parameters()).dtype != torch.float64
        )

    def capture_all(self) -> None:
        """Captures every bucket's graph now (at engine start, instead of at the first batch of each shape). The
        fresh buffers hold padding rows only, so the warm-ups write nothing but the null block."""
        for rows in self.batch_sizes:
            for blocks in self.block_counts:
                buffers = self.buffers.get((rows, blocks)) or self._new_buffers((rows, blocks))
                if self.capture and buffers.graph is None:
                    self._capture(buffers)

    def supports(self, group: list[ScheduledSequence]) -> bool:
        """Whether this batch is a decode batch the graphs cover: one token per row, every row drawing."""
        return (
            self.enabled and len(group) <= self.batch_sizes[-1] and all(s.num_tokens == 1 and s.samples for s in group)
        )

    def run(self, group: list[ScheduledSequence]) -> torch.Tensor | None:
        """Last-position logits [B, V] of a decode batch (``supports(group)`` must hold); None when its context is
        past every bucket (the caller runs it eagerly)."""
        rows = [(s.seq.blocks, s.seq.num_computed, 1) for s in group]
        bs = self.cache.block_size
        needed = max(-(-(computed + 1) // bs) - min(blocks.dropped) for blocks, computed, _ in rows)
        key = (bucket_for(len(group), self.batch_sizes), bucket_for(needed, self.block_counts))
        if key[0] is None or key[1] is None:
            return None
        layout = pad_layout(batch_layout(self.cache, rows, 1, n_blocks=key[1]), key[0])
        ids = torch.zeros(key[0], 1, dtype=torch.long)
        ids[: len(group), 0] = torch.tensor([s.seq.tokens_tail() for s in group])  # decode: the last token
        buffers = self.buffers.get(key) or self._new_buffers(key)
        _copy_into(buffers, ids, layout)
        if not self.capture:
            return self._step(buffers)[: len(group)]
        if buffers.graph is None:
            self._capture(buffers)
        buffers.graph.replay()
        return buffers.logits[: len(group)].clone()  # the next replay of any graph may reuse this memory

    def _new_buffers(self, key: tuple[int, int]) -> _Buffers:
        rows, blocks = key
        groups = len(self.cache.groups)
        bs = self.cache.block_size
        key_positions = torch.full((rows, blocks * bs), -1, dtype=torch.long)
        key_positions[:, 0] = 0  # before the first copy: every row is padding
        layout = BatchLayout(
            torch.zeros(rows, 1, dtype=torch.long),
            [torch.zeros(rows, dtype=torch.long) for _ in range(groups)],
            [torch.zeros(rows, blocks, dtype=torch.long) for _ in range(groups)],
            [key_positions.clone() for _ in range(groups)],
        ).to(self.device)
        buffers = _Buffers(torch.zeros(rows, 1, dtype=torch.long, device=self.device), layout)
        self.buffers[key] = buffers
        return buffers

    def _step(self, buffers: _Buffers) -> torch.Tensor:
        batch = PagedBatch(self.cache, buffers.layout)
        hidden = self.model.hidden_states(
            buffers.ids, cache=batch, positions=buffers.layout.positions, rope_end=self.max_model_len
        )  # (B, 1, dim)
        return self.model.lm_head(hidden[:, 0])

    def _capture(self, buffers: _Buffers) -> None:
        """Two warm-up runs on a side stream, then the capture. The warm-ups write what the buffers hold: padding
        rows only (``capture_all``: the null block), or a real step's inputs (the entries its replay writes again)."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._step(buffers)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            buffers.logits = self._step(buffers)
        buffers.graph = graph


def _copy_into(buffers: _Buffers, ids: torch.Tensor, layout: BatchLayout) -> None:
    buffers.ids.copy_(ids)
    target = buffers.layout
    target.positions.copy_(layout.positions)
    for dst, src in zip(
        (*target.slots, *target.tables, *target.key_positions),
        (*layout.slots, *layout.tables, *layout.key_positions),
        strict=True,
    ):
        dst.copy_(src)
