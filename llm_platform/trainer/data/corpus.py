"""A cleaned corpus on disk: JSONL shards per split (`train-00000.jsonl`, `val-00000.jsonl`), one `{"id", "text"}`
record per line. Written by the data stage, read by the tokenizer stage and anything else that wants documents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

SHARD_BYTES = 128 << 20


class CorpusWriter:
    """Streams documents into size-bounded shards, one sequence of shards per split."""

    def __init__(self, folder: Path, shard_bytes: int = SHARD_BYTES):
        self.folder = folder
        self.shard_bytes = shard_bytes
        self._files: dict[str, tuple[int, int, object]] = {}  # split -> (shard index, bytes written, file)
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, split: str, doc_id: str, text: str) -> None:
        index, written, f = self._files.get(split, (-1, self.shard_bytes, None))
        if written >= self.shard_bytes:
            if f is not None:
                f.close()
            index, written = index + 1, 0
            f = open(self.folder / f"{split}-{index:05d}.jsonl", "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
        line = json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n"
        f.write(line)
        self._files[split] = (index, written + len(line), f)

    def close(self) -> None:
        for _, _, f in self._files.values():
            f.close()
        self._files.clear()


def iter_corpus(folder: Path, split: str) -> Iterator[str]:
    """Texts of a split, shard by shard."""
    for shard in sorted(folder.glob(f"{split}-*.jsonl")):
        with open(shard, encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)["text"]
