"""Batches for fine-tuning data: sequence packing with attention boundaries, dynamic batching by length, and a
prefetching loader that resumes exactly where a checkpoint left it.

Packing puts several examples into one row of `seq_len` tokens (best-fit decreasing, so little is padding). Each
row says where its examples start and end, as `document_ids` (1, 2, ... per example, 0 for padding), `position_ids`
that restart at every example, and `cu_seqlens` (cumulative boundaries, the layout of varlen attention kernels), so
attention can stay within an example (the trainer's `model.document_mask`, fed by `document_ids`; padding is a
document of its own, whose tokens predict nothing). Dynamic batching instead pads examples of similar length
together under a token budget. Everything is numpy: the trainer turns batches into tensors.
"""

from __future__ import annotations

import bisect
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    """One tokenized training example; `loss_mask[i]` says whether token i is predicted (e.g. response, not prompt)."""

    input_ids: Sequence[int]
    loss_mask: Sequence[bool] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)


def _labels(example: Example, length: int) -> np.ndarray:
    ids = np.asarray(example.input_ids[:length], dtype=np.int64)
    if example.loss_mask is None:
        return ids
    mask = np.asarray(example.loss_mask[:length], dtype=bool)
    return np.where(mask, ids, IGNORE_INDEX)


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bins of example indices whose lengths sum to at most `capacity`: longest examples first, each into the bin it
    fills most tightly (a sorted list of free room makes that a binary search). Examples longer than `capacity` get a
    bin of their own (they are truncated when packed)."""
    order = sorted(range(len(lengths)), key=lambda i: (-min(lengths[i], capacity), i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin index), sorted
    for i in order:
        size = min(lengths[i], capacity)
        at = bisect.bisect_left(free, (size, -1))
        if at < len(free):
            room, b = free.pop(at)
            bins[b].append(i)
        else:
            room, b = capacity, len(bins)
            bins.append([i])
        if room - size > 0:
            bisect.insort(free, (room - size, b))
    return bins


def pack_row(examples: Sequence[Example], seq_len: int, pad_id: int) -> dict[str, np.ndarray]:
    """One packed row: the examples back to back (truncated to fit), then padding."""
    input_ids = np.full(seq_len, pad_id, dtype=np.int64)
    labels = np.full(seq_len, IGNORE_INDEX, dtype=np.int64)
    position_ids = np.zeros(seq_len, dtype=np.int64)
    document_ids = np.zeros(seq_len, dtype=np.int32)
    bounds = [0]
    at = 0
    for doc, example in enumerate(examples, 1):
        n = min(len(example), seq_len - at)
        if n <= 0:
            break
        input_ids[at : at + n] = example.input_ids[:n]
        labels[at : at + n] = _labels(example, n)
        position_ids[at : at + n] = np.arange(n)
        document_ids[at : at + n] = doc
        at += n
        bounds.append(at)
    if at < seq_len:
        bounds.append(seq_len)  # the padding tail is a segment of its own for varlen kernels; it has no labels
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": position_ids,
        "document_ids": document_ids,
        "cu_seqlens": np.asarray(bounds, dtype=np.int32),
    }


def collate_packed(rows: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack packed rows; `cu_seqlens` becomes the boundaries over the flattened batch (row r offset by r * L)."""
    seq_len = len(rows[0]["input_ids"])
    batch = {k: np.stack([r[k] for r in rows]) for k in ("input_ids", "labels", "position_ids", "document_ids")}
    cu = [rows[0]["cu_seqlens"]] + [r["cu_seqlens"][1:] + i * seq_len for i, r in enumerate(rows) if i > 0]
    batch["cu_seqlens"] = np.concatenate(cu).astype(np.int32)
    batch["max_seqlen"] = np.int32(max(int(np.diff(r["cu_seqlens"]).max()) for r in rows))
    return batch


def collate_padded(examples: Sequence[Example], pad_id: int) -> dict[str, np.ndarray]:
    """Right-padded batch of whole examples, with an attention mask (1 for real tokens)."""
    width = max(len(e) for e in examples)
    input_ids = np.full((len(examples), width), pad_id, dtype=np.int64)
    labels = np.full((len(examples), width), IGNORE_INDEX, dtype=np.int64)
    attention_mask = np.zeros((len(examples), width), dtype=np.int64)
    for r, e in enumerate(examples):
        input_ids[r, : len(e)] = e.input_ids
        labels[r, : len(e)] = _labels(e, len(e))
        attention_mask[r, : len(e)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def length_batches(
    lengths: Sequence[int],
    max_tokens: int,
    rng: np.random.Generator,
    max_batch_size: int | None = None,
    window: int = 64,
) -> list[list[int]]:
    """Batches of example indices, each costing at most `max_tokens` once padded (rows x longest row).

    Examples are shuffled, sorted by length within windows of `window * typical batch` examples (similar lengths
    meet, little padding; randomness stays across windows), cut greedily, and the batches shuffled again."""
    if max(lengths, default=0) > max_tokens:
        raise ValueError(f"an example has {max(lengths)} tokens, more than max_tokens={max_tokens}; raise max_tokens")
    order = rng.permutation(len(lengths))
    span = window * max(1, max_tokens // max(1, int(np.median(lengths)) if len(lengths) else 1))
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span].tolist(), key=lambda i: lengths[i])
        current: list[int] = []
        longest = 0
        for i in chunk:
            grown = max(longest, lengths[i])
            full = max_batch_size is not None and len(current) >= max_batch_size
            if current and (grown * (len(current) + 1) > max_tokens or full):
                batches.append(current)
                current, grown = [], lengths[i]
            current.append(i)
            longest = grown
        if current:
            batches.append(current)
    return [batches[i] for i in rng.permutation(len(batches))]


class FinetuneLoader:
    """Batches of fine-tuning examples, epoch after epoch, with a resumable position.

    mode `pack`: rows of `seq_len` packed tokens, `batch_size` rows per batch. mode `dynamic`: padded batches of whole
    examples under `max_tokens`. The order depends only on (`seed`, epoch), so `state_dict()` (epoch and batches
    consumed) restores the exact continuation. `prefetch` batches are prepared ahead on a background thread.
    """

    def __init__(
        self,
        examples: Sequence[Example],
        *,
        mode: Literal["pack", "dynamic"] = "pack",
        seq_len: int = 2048,
        batch_size: int = 8,
        max_tokens: int = 16384,
        pad_id: int = 0,
        seed: int = 0,
        epochs: int | None = 1,
        prefetch: int = 2,
    ):
        if not examples:
            raise ValueError("the fine-tuning dataset has no examples")
        if mode not in ("pack", "dynamic"):
            raise ValueError(f"mode '{mode}' is not one of: pack, dynamic")
        self.examples = list(examples)
        self.mode = mode
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.pad_id = pad_id
        self.seed = seed
        self.epochs = epochs
        self.prefetch = prefetch
        self.epoch = 0
        self.batch = 0  # batches of the current epoch already handed out

    def plan(self, epoch: int) -> list[list[int]]:
        """The epoch's batches as lists of example indices (for `pack`: rows as lists, grouped per batch)."""
        rng = np.random.default_rng([self.seed, epoch])
        lengths = [len(e) for e in self.examples]
        if self.mode == "dynamic":
            return length_batches(lengths, self.max_tokens, rng)
        order = rng.permutation(len(self.examples))
        rows = best_fit_decreasing([lengths[i] for i in order], self.seq_len)
        rows = [[int(order[j]) for j in row] for row in rows]
        rows = [rows[i] for i in rng.permutation(len(rows))]
        return [rows[i : i + self.batch_size] for i in range(0, len(rows), self.batch_size)]

    def batches_per_epoch(self) -> int:
        return len(self.plan(0))

    def build(self, entry: list) -> dict[str, np.ndarray]:
        if self.mode == "dynamic":
            return collate_padded([self.examples[i] for i in entry], self.pad_id)
        return collate_packed([pack_row([self.examples[i] for i in row], self.seq_len, self.pad_id) for row in entry])

    def _positions(self) -> Iterator[tuple[int, int, list]]:
        epoch, skip = self.epoch, self.batch
        while self.epochs is None or epoch < self.epochs:
            plan = self.plan(epoch)
            for b in range(skip, len(plan)):
                yield epoch, b, plan[b]
            epoch, skip = epoch + 1, 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        if self.prefetch <= 0:
            for epoch, b, entry in self._positions():
                batch = self.build(entry)
                self._advance(epoch, b)
                yield batch
            return
        ready: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        done = object()

        def produce() -> None:
            try:
                for epoch, b, entry in self._positions():
                    if stop.is_set():
                        return
                    ready.put((epoch, b, self.build(entry)))
                ready.put(done)
            except BaseException as e:  # surfaced in the consumer, which re-raises it
                ready.put(e)

        worker = threading.Thread(target=produce, daemon=True, name="finetune-prefetch")
        worker.start()
        try:
            while (item := ready.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                epoch, b, batch = item
                self._advance(epoch, b)
                yield batch
        finally:
            stop.set()
            while worker.is_alive():  # unblock a producer waiting on a full queue
                try:
                    ready.get_nowait()
                except queue.Empty:
                    worker.join(timeout=0.01)

    def _advance(self, epoch: int, b: int) -> None:
        self.epoch, self.batch = epoch, b + 1

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batch": self.batch, "seed": self.seed, "mode": self.mode}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("seed", self.seed) != self.seed or state.get("mode", self.mode) != self.mode:
            raise ValueError(
                f"loader state is for seed={state.get('seed')} mode={state.get('mode')}, this loader has "
                f"seed={self.seed} mode={self.mode}: the batch order would differ; use the same settings to resume"
            )
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
