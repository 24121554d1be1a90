"""Sharded token files: a split as several `<split>-NNNNN.bin` token arrays (uint16 when the vocabulary fits, else
uint32) with `<split>-NNNNN.idx` document offsets and a `<split>.shards.json` index.

For corpora too large for one file, and for readers that stream shard by shard (one worker per shard). A document
never straddles two shards, so every shard is a self-contained unit of work; `TokenShards` still reads the split
as one token sequence (windows may cross shard boundaries) and by document. The single-file layout of `pack.py`
(`write_split` / `open_split`) stays what the tokenizer stage writes and the pretraining loader reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .pack import token_dtype

SHARD_TOKENS = 1 << 28  # 512 MiB of uint16 tokens


class TokenShardWriter:
    """Streams documents (each followed by `eos_id`) into shards of at most `shard_tokens` tokens."""

    def __init__(self, folder: Path, split: str, vocab_size: int, eos_id: int, shard_tokens: int = SHARD_TOKENS):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.split, self.eos_id, self.shard_tokens = folder, split, eos_id, shard_tokens
        self.dtype = token_dtype(vocab_size)
        self.vocab_size = vocab_size
        self.shards: list[dict[str, int | str]] = []
        self._file = None
        self._offsets: list[int] = []
        self._tokens = 0

    def _open_next(self) -> None:
        self._close_current()
        name = f"{self.split}-{len(self.shards):05d}"
        self._file = open(self.folder / f"{name}.bin", "wb")  # noqa: SIM115 (closed in _close_current)
        self.shards.append({"name": name, "tokens": 0, "docs": 0})
        self._offsets, self._tokens = [], 0

    def _close_current(self) -> None:
        if self._file is None:
            return
        self._file.close()
        np.asarray([*self._offsets, self._tokens], dtype=np.int64).tofile(
            self.folder / f"{self.shards[-1]['name']}.idx"
        )
        self.shards[-1].update(tokens=self._tokens, docs=len(self._offsets))
        self._file = None

    def add(self, ids: Sequence[int]) -> None:
        arr = np.asarray([*ids, self.eos_id], dtype=self.dtype)
        if self._file is None or (self._tokens and self._tokens + arr.size > self.shard_tokens):
            self._open_next()
        self._offsets.append(self._tokens)
        self._file.write(arr.tobytes())
        self._tokens += arr.size

    def close(self) -> dict[str, int]:
        """Finish the last shard and write the index; returns token and document counts for the manifest."""
        self._close_current()
        index = {"dtype": self.dtype.name, "vocab_size": self.vocab_size, "eos_id": self.eos_id, "shards": self.shards}
        (self.folder / f"{self.split}.shards.json").write_text(json.dumps(index, indent=2))
        return {
            f"{self.split}_tokens": sum(int(s["tokens"]) for s in self.shards),
            f"{self.split}_docs": sum(int(s["docs"]) for s in self.shards),
        }


def write_shards(
    folder: Path,
    split: str,
    docs: Iterable[Sequence[int]],
    eos_id: int,
    vocab_size: int,
    shard_tokens: int = SHARD_TOKENS,
) -> dict[str, int]:
    writer = TokenShardWriter(folder, split, vocab_size, eos_id, shard_tokens)
    for ids in docs:
        writer.add(ids)
    return writer.close()


class TokenShards:
    """A sharded split, memory-mapped: by global token position, or by document."""

    def __init__(self, folder: Path, split: str):
        index_path = folder / f"{split}.shards.json"
        if not index_path.is_file():
            raise FileNotFoundError(f"{index_path}: no sharded split '{split}' here (written by write_shards)")
        index = json.loads(index_path.read_text())
        self.dtype = np.dtype(index["dtype"])
        self.eos_id = index["eos_id"]
        self.arrays = [np.memmap(folder / f"{s['name']}.bin", dtype=self.dtype, mode="r") for s in index["shards"]]
        self.offsets = [np.fromfile(folder / f"{s['name']}.idx", dtype=np.int64) for s in index["shards"]]
        self.token_starts = np.concatenate(([0], np.cumsum([len(a) for a in self.arrays])))
        self.doc_starts = np.concatenate(([0], np.cumsum([len(o) - 1 for o in self.offsets])))

    @property
    def num_tokens(self) -> int:
        return int(self.token_starts[-1])

    @property
    def num_docs(self) -> int:
        return int(self.doc_starts[-1])

    def document(self, i: int) -> np.ndarray:
        """Document i's tokens, its trailing EOS included."""
        if not 0 <= i < self.num_docs:
            raise IndexError(f"document {i} is not in 0..{self.num_docs - 1}")
        shard = int(np.searchsorted(self.doc_starts, i, side="right")) - 1
        local = i - int(self.doc_starts[shard])
        start, end = self.offsets[shard][local], self.offsets[shard][local + 1]
        return np.asarray(self.arrays[shard][start:end])

    def tokens(self, start: int, length: int) -> np.ndarray:
        """`length` tokens from global position `start`, read across shard boundaries."""
        if start < 0 or start + length > self.num_tokens:
            raise IndexError(f"tokens {start}..{start + length} are outside 0..{self.num_tokens}")
        parts = []
        shard = int(np.searchsorted(self.token_starts, start, side="right")) - 1
        while length > 0:
            local = start - int(self.token_starts[shard])
            take = min(length, len(self.arrays[shard]) - local)
            parts.append(np.asarray(self.arrays[shard][local : local + take]))
            start, length, shard = start + take, length - take, shard + 1
        return np.concatenate(parts) if parts else np.empty(0, dtype=self.dtype)
