"""Exact deduplication by a hash of the normalised text, and the train/validation split by the same hash."""

from __future__ import annotations

import hashlib


def content_hash(text: str) -> bytes:
    """Hash of the text with case and whitespace differences removed, so trivially reformatted copies collide."""
    return hashlib.blake2b(" ".join(text.lower().split()).encode(), digest_size=16).digest()


class ExactDedup:
    """Keeps the first document of each content hash. Memory: 16 bytes per distinct document."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()

    def is_new(self, text: str) -> bool:
        return self.is_new_hash(content_hash(text))

    def is_new_hash(self, digest: bytes) -> bool:
        if digest in self.seen:
            return False
        self.seen.add(digest)
        return True


def is_validation(text: str, fraction: float) -> bool:
    """Deterministic held-out split by content: a document lands in the same split on every run and machine."""
    return fraction > 0 and is_validation_hash(content_hash(text), fraction)


def is_validation_hash(digest: bytes, fraction: float) -> bool:
    return fraction > 0 and int.from_bytes(digest[:4], "big") / 2**32 < fraction
