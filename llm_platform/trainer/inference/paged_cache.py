"""Paged KV cache: fixed-size blocks from a shared pool, a block table per sequence, prefix sharing by block hash.

Memory is a pool of ``num_blocks`` blocks of ``block_size`` token slots per layer; a sequence holds the blocks its
tokens need (a block table), so memory follows the tokens actually in flight instead of batch x max_len. Block 0 is
the null block: never handed out, padding slots write to it and its keys are always masked.

Layers are grouped by attention span. Full-attention layers keep every block; a sliding-window group keeps only the
blocks its window can still see and returns older ones to its own (smaller) pool. MLA layers store their latent and
shared RoPE key, the same "first/second" pair ``StaticKVCache`` stores.

Prefix sharing (full-attention-only models): a full block is named by the hash of (previous block's hash, its tokens,
adapter); a new sequence whose leading full blocks are cached reuses them (reference counts) and computes only the
rest. Only full blocks are shared, and a sequence never writes into a block it did not fill, so no copy-on-write is
needed. Freed blocks keep their hash until the pool hands them out again (least recently freed first).
"""

from __future__ import annotations

import array
import math
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from llm_platform.trainer.model.config import ModelConfig

NULL_BLOCK = 0


class BlockAllocator:
    """Block ids 1 .. num_blocks - 1 with reference counts and a hash index of full, cached blocks."""

    def __init__(self, num_blocks: int) -> None:
        if num_blocks < 2:
            raise ValueError(f"num_blocks must be >= 2 (block 0 is reserved), got {num_blocks}")
        self.num_blocks = num_blocks
        self.refs = [0] * num_blocks
        self.free: OrderedDict[int, None] = OrderedDict((b, None) for b in range(1, num_blocks))
        self.hash_of: dict[int, int] = {}
        self.block_of: dict[int, int] = {}

    @property
    def num_free(self) -> int:
        return len(self.free)

    @property
    def num_used(self) -> int:
        return self.num_blocks - 1 - len(self.free)

    def allocate(self) -> int:
        block, _ = self.free.popitem(last=False)
        old = self.hash_of.pop(block, None)
        if old is not None:
            del self.block_of[old]
        self.refs[block] = 1
        return block

    def lookup(self, block_hash: int) -> int | None:
        """The cached block with this hash, now referenced once more; None if not cached."""
        block = self.block_of.get(block_hash)
        if block is None:
            return None
        if self.refs[block] == 0:
            del self.free[block]
        self.refs[block] += 1
        return block

    def register(self, block: int, block_hash: int) -> None:
        if block_hash not in self.block_of and block not in self.hash_of:
            self.block_of[block_hash] = block
            self.hash_of[block] = block_hash

    def release(self, block: int) -> None:
        self.refs[block] -= 1
        if self.refs[block] == 0:
            self.free[block] = None
            if block not in self.hash_of:  # nothing to reuse: hand it out before the cached ones
                self.free.move_to_end(block, last=False)


def block_hash(parent: int | None, tokens: tuple[int, ...], adapter: str | None) -> int:
    return hash((parent, tokens, adapter))


@dataclass
class KVGroup:
    """Layers sharing one attention span (window None = full) and one block pool."""

    layers: list[int]
    window: int | None
    allocator: BlockAllocator


@dataclass
class SequenceBlocks:
    """A sequence's cache state: block tables per group, how many leading blocks of each a window dropped (their
    entries are NULL_BLOCK), and the hashes of its full blocks registered so far."""

    tables: list[list[int]]
    dropped: list[int]
    hashes: list[int] = field(default_factory=list)


class PagedKVCache:
    """The block pools of every layer plus the groups' allocators. ``num_blocks`` counts full-attention blocks;
    windowed groups get at most what ``max_num_seqs`` sequences can need inside their window."""

    def __init__(
        self,
        config: ModelConfig,
        *,
        num_blocks: int,
        block_size: int,
        max_num_seqs: int,
        max_step_tokens: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        enable_prefix_caching: bool = True,
    ) -> None:
        self.block_size = block_size
        if config.attention == "mla":
            self.heads, self.widths = 1, (config.kv_lora_rank, config.qk_rope_head_dim)
        else:
            self.heads, self.widths = config.kv_heads, (config.head_size, config.head_size)
        by_window: dict[int | None, list[int]] = {}
        for layer in range(config.n_layers):
            by_window.setdefault(config.window_for_layer(layer), []).append(layer)
        self.groups: list[KVGroup] = []
        self.group_of: dict[int, int] = {}
        for window, layers in by_window.items():
            blocks = num_blocks
            if window is not None:
                per_seq = math.ceil((window + max_step_tokens) / block_size) + 1
                blocks = min(num_blocks, max_num_seqs * per_seq + 1)
            for layer in layers:
                self.group_of[layer] = len(self.groups)
            self.groups.append(KVGroup(layers, window, BlockAllocator(blocks)))
        self.prefix_caching = enable_prefix_caching and all(g.window is None for g in self.groups)
        # GQA/MHA layers with RoPE or no positions take a first prefill chunk's keys as they are (PagedBatch.update)
        self.plain_attention = config.attention != "mla" and config.position_encoding != "alibi"
        self.first: dict[int, torch.Tensor] = {}
        self.second: dict[int, torch.Tensor] = {}
        for g in self.groups:
            for layer in g.layers:
                n = g.allocator.num_blocks
                self.first[layer] = torch.zeros(n, block_size, self.heads, self.widths[0], device=device, dtype=dtype)
                self.second[layer] = torch.zeros(n, block_size, self.heads, self.widths[1], device=device, dtype=dtype)

    # ---------------------------------------------------------------- accounting
    @property
    def full_group(self) -> KVGroup:
        return next((g for g in self.groups if g.window is None), self.groups[0])

    def capacity_tokens(self) -> int:
        """Tokens one sequence can hold at most (the full-attention pool, or the window pool if all are windowed)."""
        group = self.full_group
        return (group.allocator.num_blocks - 1) * self.block_size if group.window is None else 2**62

    def usage(self) -> tuple[int, int]:
        """(blocks in use, blocks in all pools)."""
        return sum(g.allocator.num_used for g in self.groups), sum(g.allocator.num_blocks - 1 for g in self.groups)

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.first.values(), *self.second.values()))

    def new_sequence(self) -> SequenceBlocks:
        return SequenceBlocks([[] for _ in self.groups], [0] * len(self.groups))

    def _first_live_block(self, group: KVGroup, num_computed: int) -> int:
        """Index of the oldest block the next token still attends to (0 for full attention)."""
        if group.window is None:
            return 0
        return max(0, num_computed - group.window + 1) // self.block_size

    def _needed(self, seq: SequenceBlocks, num_computed: int, num_new: int) -> list[int]:
        total = math.ceil((num_computed + num_new) / self.block_size)
        needed = []
        for gi, group in enumerate(self.groups):
            table = seq.tables[gi]
            released = max(0, min(self._first_live_block(group, num_computed), len(table)) - seq.dropped[gi])
            needed.append(max(0, total - len(table)) - released)
        return needed

    def can_allocate(self, seq: SequenceBlocks, num_computed: int, num_new: int) -> bool:
        return all(
            n <= g.allocator.num_free
            for n, g in zip(self._needed(seq, num_computed, num_new), self.groups, strict=True)
        )

    def allocate(self, seq: SequenceBlocks, num_computed: int, num_new: int) -> None:
        """Extends the tables to cover positions up to num_computed + num_new, first returning blocks that slid out
        of a window."""
        total = math.ceil((num_computed + num_new) / self.block_size)
        for gi, group in enumerate(self.groups):
            table = seq.tables[gi]
            live_from = min(self._first_live_block(group, num_computed), len(table))
            for j in range(seq.dropped[gi], live_from):
                group.allocator.release(table[j])
                table[j] = NULL_BLOCK
            seq.dropped[gi] = max(seq.dropped[gi], live_from)
            while len(table) < total:
                table.append(group.allocator.allocate())

    def free(self, seq: SequenceBlocks) -> None:
        for gi, group in enumerate(self.groups):
            for block in reversed(seq.tables[gi]):
                if block != NULL_BLOCK:
                    group.allocator.release(block)
            seq.tables[gi] = []
            seq.dropped[gi] = 0
        seq.hashes = []

    # ---------------------------------------------------------------- prefix sharing
    def match_prefix(self, seq: SequenceBlocks, tokens: list[int], adapter: str | None) -> int:
        """Reuses cached leading full blocks of ``tokens`` (always leaving the last token to compute, whose logits
        the sequence needs); returns how many tokens they cover."""
        if not self.prefix_caching or seq.tables[0]:
            return 0
        allocator = self.groups[0].allocator
        parent = None
        for start in range(0, len(tokens) - self.block_size, self.block_size):
            h = block_hash(parent, tuple(tokens[start : start + self.block_size]), adapter)
            block = allocator.lookup(h)
            if block is None:
                break
            seq.tables[0].append(block)
            seq.hashes.append(h)
            parent = h
        return len(seq.tables[0]) * self.block_size

    def has_unregistered_blocks(self, seq: SequenceBlocks, num_computed: int) -> bool:
        return self.prefix_caching and num_computed // self.block_size > len(seq.hashes)

    def register_full_blocks(
        self, seq: SequenceBlocks, tokens: list[int], num_computed: int, adapter: str | None
    ) -> None:
        """Names the blocks filled so far so later sequences with the same prefix can reuse them."""
        if not self.has_unregistered_blocks(seq, num_computed):
            return
        allocator = self.groups[0].allocator
        for j in range(len(seq.hashes), num_computed // self.block_size):
            parent = seq.hashes[-1] if seq.hashes else None
            h = block_hash(parent, tuple(tokens[j * self.block_size : (j + 1) * self.block_size]), adapter)
            allocator.register(seq.tables[0][j], h)
            seq.hashes.append(h)


@dataclass
class BatchLayout:
    """Where a padded [B, T] batch's tokens sit and what they attend to, per KV group: built on the host once per
    step, with a few tensor ops (not per token), so a step's host work does not grow with its tokens.

    positions [B, T]: the new tokens' positions (padding repeats the row's last one, so padding queries look at real
    keys and no softmax row is empty); slots [B * T] per group: where each token's entries go (padding: the null
    block); tables [B, n_blocks] and key_positions [B, n_blocks * block_size] (-1 = empty) per group: what each row
    attends to."""

    positions: torch.Tensor
    slots: list[torch.Tensor]
    tables: list[torch.Tensor]
    key_positions: list[torch.Tensor]
    fresh: bool = False  # every row starts at position 0: its keys are exactly this forward's new tokens

    def to(self, device: torch.device) -> BatchLayout:
        def move(ts: list[torch.Tensor]) -> list[torch.Tensor]:
            return [t.to(device) for t in ts]

        positions = self.positions.to(device)
        return BatchLayout(positions, move(self.slots), move(self.tables), move(self.key_positions), self.fresh)


def long_tensor(values: array.array | list[int]) -> torch.Tensor:
    """An int64 CPU tensor of the values, through a C array (about 4x faster than ``torch.tensor`` of a list)."""
    return torch.frombuffer(values if isinstance(values, array.array) else array.array("q", values), dtype=torch.long)


def batch_layout(
    cache: PagedKVCache, rows: list[tuple[SequenceBlocks, int, int]], width: int, n_blocks: int | None = None
) -> BatchLayout:
    """The layout of rows (blocks, num_computed, num_new): row b's new tokens sit at positions num_computed ..
    num_computed + num_new - 1, left-aligned in a [B, width] batch. n_blocks: the tables' width (default: the most
    blocks a row attends to; a CUDA graph passes its fixed width, which must be at least that)."""
    bs = cache.block_size
    starts = torch.tensor([computed for _, computed, _ in rows])
    counts = torch.tensor([new for _, _, new in rows])
    ends = starts + counts
    offsets = torch.arange(width)
    real = offsets < counts[:, None]  # (B, T)
    positions = starts[:, None] + torch.minimum(offsets, counts[:, None] - 1)  # (B, T)
    layout = BatchLayout(positions, [], [], [], fresh=all(computed == 0 for _, computed, _ in rows))
    for gi in range(len(cache.groups)):
        live = [seq.tables[gi][seq.dropped[gi] : -(-(computed + new) // bs)] for seq, computed, new in rows]
        width_blocks = max(1, max(len(blocks) for blocks in live)) if n_blocks is None else n_blocks
        flat = array.array("q")
        for blocks in live:
            flat.extend(blocks)
            flat.extend([NULL_BLOCK] * (width_blocks - len(blocks)))
        tables = long_tensor(flat).view(len(rows), width_blocks)
        first = torch.tensor([seq.dropped[gi] for seq, _, _ in rows])
        index = (positions // bs - first[:, None]).clamp_(0, width_blocks - 1)
        slots = torch.where(real, tables.gather(1, index) * bs + positions % bs, NULL_BLOCK)  # (B, T)
        key_offsets = torch.arange(width_blocks * bs)
        key_positions = first[:, None] * bs + key_offsets  # (B, n_blocks * bs)
        filled = torch.tensor([len(blocks) for blocks in live])[:, None] * bs
        key_positions = torch.where((key_positions < ends[:, None]) & (key_offsets < filled), key_positions, -1)
        layout.slots.append(slots.view(-1))
        layout.tables.append(tables)
        layout.key_positions.append(key_positions)
    return layout


class PagedBatch:
    """What one forward over a padded batch of sequences passes to the model as ``cache``: its ``BatchLayout`` (on
    the cache's device) and the pools it writes the new entries into and reads each row's entries from."""

    def __init__(self, cache: PagedKVCache, layout: BatchLayout) -> None:
        self.cache = cache
        self.positions = layout.positions
        self.slots = layout.slots
        self.tables = layout.tables
        self.key_positions = layout.key_positions
        self.fresh = layout.fresh and cache.plain_attention

    def update(
        self,
        layer: int,
        first: torch.Tensor,
        second: torch.Tensor,
        start_pos: int = 0,  # noqa: ARG002  # KV cache protocol
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Writes the new entries [B, heads, T, width] into their slots and returns each row's cached entries
        [B, heads, L, width] with their positions [B, L] (-1 = empty). ``start_pos`` is unused: rows carry their own
        positions.

        When every row starts at position 0 (a first prefill chunk) and the layer's window spans the chunk, a row's
        keys are exactly its new entries, left-aligned like its queries: those come back as they are, with positions
        None (plain causal attention: the fused kernels, no gather; a right-padded key is never before a real
        query)."""
        gi = self.cache.group_of[layer]
        pools = (self.cache.first[layer], self.cache.second[layer])
        for pool, new in zip(pools, (first, second), strict=True):
            blocks, bs, heads, width = pool.shape
            flat = pool.view(blocks * bs, heads, width)
            flat.index_copy_(0, self.slots[gi], new.transpose(1, 2).reshape(-1, heads, width).to(pool.dtype))
        window = self.cache.groups[gi].window
        if self.fresh and (window is None or first.shape[2] <= window) and first.dtype == pools[0].dtype:
            return first, second, None
        out = []
        for pool, new in zip(pools, (first, second), strict=True):
            blocks, bs, heads, width = pool.shape
            gathered = pool[self.tables[gi]]  # (B, n_blocks, bs, heads, width)
            rows = gathered.shape[0]
            out.append(gathered.view(rows, -1, heads, width).transpose(1, 2).to(new.dtype))  # (B, heads, L, width)
        return out[0], out[1], self.key_positions[gi]
