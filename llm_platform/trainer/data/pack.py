"""Tokenized corpora as flat binary token files: every document's ids followed by EOS, in one array per split.

A split is `<split>.bin` (uint16 when the vocabulary fits, else uint32), `<split>.idx` (int64 start offset of each
document) and `meta.json`. Training reads fixed-length windows from the memory-mapped array, so packing costs nothing
at load time and no token is padding.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def write_split(folder: Path, split: str, docs: Iterable[list[int]], eos_id: int, vocab_size: int) -> dict[str, int]:
    """Append each document (plus EOS) to `<split>.bin`, streaming; returns counts for the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(vocab_size)
    offsets: list[int] = []
    total = 0
    with open(folder / f"{split}.bin", "wb") as f:
        for ids in docs:
            offsets.append(total)
            arr = np.asarray([*ids, eos_id], dtype=dtype)
            f.write(arr.tobytes())
            total += arr.size
    np.asarray(offsets, dtype=np.int64).tofile(folder / f"{split}.idx")
    return {f"{split}_tokens": total, f"{split}_docs": len(offsets)}


def write_meta(folder: Path, vocab_size: int, eos_id: int, counts: dict[str, int]) -> None:
    meta = {"dtype": token_dtype(vocab_size).name, "vocab_size": vocab_size, "eos_id": eos_id, **counts}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2))


def open_split(folder: Path, split: str) -> np.memmap:
    """The token array of a split, memory-mapped read-only."""
    meta = json.loads((folder / "meta.json").read_text())
    path = folder / f"{split}.bin"
    if not path.is_file() or path.stat().st_size == 0:
        raise FileNotFoundError(f"{path}: split '{split}' holds no tokens")
    return np.memmap(path, dtype=np.dtype(meta["dtype"]), mode="r")
