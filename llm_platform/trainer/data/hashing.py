"""Stable, vectorised hashes of word n-grams: the same text hashes the same in every process and on every machine
(unlike Python's salted `hash`), at numpy speed.

Text is first normalised (lowercase, no accents, punctuation or digit differences, single spaces). An n-gram's hash
is a polynomial hash of its bytes in that text, read off prefix sums in O(1) per n-gram, then mixed by splitmix64.
MinHash dedup, the hashed n-gram classifier and decontamination all build on it.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

_NON_WORD = re.compile(r"[\W_]+")
_DIGIT = re.compile(r"\d")
_COMBINING = re.compile(r"[\u0300-\u036f]")
_BASE = np.uint64(0x100000001B3)
_BASE_INVERSE = np.uint64(pow(0x100000001B3, -1, 2**64))


def normalize_words(text: str) -> str:
    """Lowercase words without accents, punctuation or digit differences, one space apart: formatting changes, a
    fixed typo in an accent, or renumbering do not make two copies of a page look different."""
    text = _COMBINING.sub("", unicodedata.normalize("NFD", text.lower()))
    return _DIGIT.sub("0", _NON_WORD.sub(" ", text)).strip()


class _Powers:
    """Powers of the polynomial base and of its inverse modulo 2^64, grown on demand and shared."""

    def __init__(self) -> None:
        self.up = np.ones(1, dtype=np.uint64)
        self.down = np.ones(1, dtype=np.uint64)

    def ensure(self, n: int) -> None:
        if n <= len(self.up):
            return
        size = max(n, 2 * len(self.up))
        with np.errstate(over="ignore"):
            self.up = np.cumprod(np.full(size, _BASE, dtype=np.uint64))
            self.up = np.concatenate(([np.uint64(1)], self.up[:-1]))
            self.down = np.cumprod(np.full(size, _BASE_INVERSE, dtype=np.uint64))
            self.down = np.concatenate(([np.uint64(1)], self.down[:-1]))


_POWERS = _Powers()


def mix(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: spreads a polynomial hash's bits so nearby inputs get unrelated outputs."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def ngram_hashes(normalized: str, n: int, whole_if_shorter: bool = True) -> np.ndarray:
    """A 64-bit hash for each word n-gram of an already normalised text. A text of fewer than n words gives one hash
    of all its words when `whole_if_shorter`, else none."""
    data = np.frombuffer(normalized.encode(), dtype=np.uint8)
    if data.size == 0:
        return np.zeros(1 if whole_if_shorter else 0, dtype=np.uint64)
    spaces = np.flatnonzero(data == 32)
    starts = np.concatenate(([0], spaces + 1))
    ends = np.concatenate((spaces, [data.size]))
    n_shingles = len(starts) - n + 1
    if n_shingles <= 0:
        if not whole_if_shorter:
            return np.zeros(0, dtype=np.uint64)
        n_shingles = 1
    first = starts[:n_shingles]
    last = ends[np.minimum(np.arange(n_shingles) + n - 1, len(ends) - 1)]
    _POWERS.ensure(data.size + 1)
    with np.errstate(over="ignore"):
        prefix = np.concatenate(([np.uint64(0)], np.cumsum(data.astype(np.uint64) * _POWERS.up[: data.size])))
        raw = (prefix[last] - prefix[first]) * _POWERS.down[first]
        return mix(raw + (last - first).astype(np.uint64))
