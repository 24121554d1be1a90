"""The `.tiktoken` ranks file (one `base64(token) rank` line per token) and its sidecar with pattern and specials.

A ranks file alone cannot encode anything: tiktoken also needs the pre-tokenization regex and the special tokens.
We keep those in `tiktoken_config.json` beside it, so `tiktoken.Encoding(**config, mergeable_ranks=ranks)` rebuilds
the encoding in one line (see `tiktoken_encoding_kwargs`).
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

RANKS_FILE = "tokenizer.tiktoken"
CONFIG_FILE = "tiktoken_config.json"


def write_ranks(path: Path, ranks: dict[bytes, int]) -> None:
    lines = [
        f"{base64.b64encode(token).decode('ascii')} {rank}\n"
        for token, rank in sorted(ranks.items(), key=lambda i: i[1])
    ]
    path.write_text("".join(lines), encoding="ascii")


def read_ranks(path: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                token_b64, rank = line.split()
                ranks[base64.b64decode(token_b64, validate=True)] = int(rank)
            except (ValueError, binascii.Error):
                raise ValueError(
                    f"{path}:{number}: expected '<base64 token> <rank>', got {line[:80]!r}; is this a .tiktoken file?"
                ) from None
    if len(set(ranks.values())) != len(ranks):
        raise ValueError(f"{path}: two tokens share a rank; each rank must appear once")
    return ranks


def write_config(path: Path, pattern: str, special_tokens: dict[str, int]) -> None:
    config = {"pat_str": pattern, "special_tokens": special_tokens, "ranks_file": RANKS_FILE}
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_config(path: Path) -> dict[str, Any]:
    config = json.loads(path.read_text(encoding="utf-8"))
    for field in ("pat_str", "special_tokens"):
        if field not in config:
            raise ValueError(
                f"{path}: missing field {field!r}; it needs pat_str (regex) and special_tokens (name -> id)"
            )
    return config
