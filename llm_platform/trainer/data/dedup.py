"""Exact deduplication by a hash of the normalised text."""

from __future__ import annotations

import hashlib
import re

_WS = re.compile(r"\s+")


def content_hash(text: str) -> bytes:
    """Hash of the text with case and whitespace differences removed, so trivially reformatted copies collide."""
    return hashlib.blake2b(_WS.sub(" ", text.lower()).strip().encode(), digest_size=16).digest()


class ExactDedup:
    """Keeps the first document of each content hash. Memory: 16 bytes per distinct document."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()

    def is_new(self, text: str) -> bool:
        digest = content_hash(text)
        if digest in self.seen:
            return False
        self.seen.add(digest)
        return True


def is_validation(text: str, fraction: float) -> bool:
    """Deterministic held-out split by content: a document lands in the same split on every run and machine."""
    if fraction <= 0:
        return False
    return int.from_bytes(content_hash(text)[:4], "big") / 2**32 < fraction
