"""Writing JSON lines: the one writer of the record files the data, finetune, align and eval stages hand on."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path


def write_jsonl(rows: Iterable[dict], path: Path) -> Path:
    """One JSON object per line (UTF-8, not ASCII-escaped), its folder made if missing; returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
