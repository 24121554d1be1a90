"""What the heuristic filters measure about a text, computed once per text and shared between filters.

Tokens are runs of word characters (a leading apostrophe kept: `she’ll` -> `she`, `’ll`), numbers with separators
(`2,000`, `3.5`), initialisms (`U.S.`), runs of dashes or dots, or single other non-space characters, from one regex
pass in C; close to spaCy's English tokenizer, which the reference implementations use. Repetition statistics hash
tokens and n-grams into numpy arrays, so counting repeated 10-grams over a long document is a handful of vector
operations instead of a Python loop over joined strings.
"""

from __future__ import annotations

import re
from functools import cached_property, lru_cache

import numpy as np

_NOT_LETTERS = "0123456789_.,:'’"  # what a word token holds besides letters (digits, separators, apostrophes)
_WORD_PATTERN = r"['’]\w+|\d+(?:[.,:]\d+)+|(?:[^\W\d_]\.){2,}|\w+"
_TOKEN = re.compile(_WORD_PATTERN + r"|-+|\.+|[^\w\s]")
_WORD = re.compile(_WORD_PATTERN)  # the same word tokens, without the punctuation and symbol tokens
_NGRAM_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


class TextView:
    """Lazily computed facts about one text. Build through `view(text)` so filters of one document share them."""

    def __init__(self, text: str):
        self.text = text

    @cached_property
    def tokens(self) -> list[str]:
        return _TOKEN.findall(self.text)

    @cached_property
    def words(self) -> list[str]:
        """Tokens made of word characters (letters, digits, underscore): the text without punctuation and symbols."""
        return _WORD.findall(self.text)

    @cached_property
    def alpha_token_count(self) -> int:
        """Tokens holding at least one letter."""
        return sum(1 for w in self.words if w.strip(_NOT_LETTERS))

    @cached_property
    def lines(self) -> list[str]:
        return self.text.split("\n")

    @cached_property
    def token_lengths(self) -> np.ndarray:
        return np.fromiter(map(len, self.tokens), dtype=np.int64, count=len(self.tokens))

    @cached_property
    def token_hashes(self) -> np.ndarray:
        """One 64-bit hash per token. Process-local (Python's string hash): for comparing within one document only."""
        return np.fromiter(map(hash, self.tokens), dtype=np.int64, count=len(self.tokens)).view(np.uint64)

    def ngram_hashes(self, n: int) -> np.ndarray:
        """A hash per token n-gram (position i covers tokens i..i+n-1); empty when the text has fewer than n tokens."""
        cache = self._ngram_cache
        if n not in cache:
            h = self.token_hashes
            m = len(h) - n + 1
            if m <= 0:
                cache[n] = np.empty(0, dtype=np.uint64)
            elif n == 1:
                cache[n] = h
            else:
                shorter = self.ngram_hashes(n - 1)
                cache[n] = shorter[:m] * _NGRAM_MULTIPLIER + h[n - 1 : n - 1 + m]
        return cache[n]

    @cached_property
    def _ngram_cache(self) -> dict[int, np.ndarray]:
        return {}

    def recurring(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions of n-grams that occur more than once (ascending), a group id per position (equal n-grams, equal
        id) and each group's size.

        An n-gram can only recur where the two (n-1)-grams it spans both recur, so from n = 3 on, only those
        positions are sorted: on prose that is a handful, which keeps the ten n-gram sizes of the repetition rules
        cheap."""
        cache = self._recurring_cache
        if n not in cache:
            hashes = self.ngram_hashes(n)
            m = hashes.size
            if n <= 2:
                candidates = np.arange(m)
            else:
                shorter = np.zeros(m + 1, dtype=bool)
                shorter[self.recurring(n - 1)[0]] = True
                candidates = np.flatnonzero(shorter[:m] & shorter[1:])
            _, inverse, counts = np.unique(hashes[candidates], return_inverse=True, return_counts=True)
            repeated = counts[inverse] > 1
            cache[n] = (candidates[repeated], inverse[repeated], counts)
        return cache[n]

    @cached_property
    def _recurring_cache(self) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return {}


@lru_cache(maxsize=1024)
def view(text: str) -> TextView:
    """The shared `TextView` of a text. Cached by value, so the filters that see the same document in one batch
    tokenize it once (the pipeline's batches are smaller than the cache)."""
    return TextView(text)


def duplicate_count_and_chars(items: list[str]) -> tuple[int, int]:
    """How many items repeat an earlier one, and how many characters those repeats hold."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


def top_ngram_chars(v: TextView, n: int) -> int:
    """Characters covered by the most frequent token n-gram (the earliest one on ties), counting every occurrence,
    with the n-gram's tokens joined by single spaces."""
    if v.ngram_hashes(n).size == 0:
        return 0
    positions, groups, counts = v.recurring(n)
    top, start = 1, 0  # nothing recurs: every n-gram occurs once, and the first one wins the tie
    if positions.size:
        sizes = counts[groups]
        top = int(sizes.max())
        start = int(positions[sizes == top][0])
    return (int(v.token_lengths[start : start + n].sum()) + n - 1) * top


def repeated_ngram_chars(v: TextView, n: int) -> int:
    """Characters (of tokens, without spaces) in n-grams that repeat an earlier one, scanning left to right and
    jumping past each repeat found, so overlapping repeats are not counted twice (Gopher's definition).

    Only positions whose n-gram occurs more than once can change the count, so the scan visits just those; on
    ordinary prose that is a small fraction of the tokens."""
    if v.ngram_hashes(n).size < 2:
        return 0
    positions, groups, _ = v.recurring(n)
    if positions.size == 0:
        return 0
    ends = np.concatenate(([0], np.cumsum(v.token_lengths)))
    seen: set[int] = set()
    next_free = 0
    chars = 0
    for j, key in zip(positions.tolist(), groups.tolist(), strict=True):
        if j < next_free:
            continue
        if key in seen:
            chars += int(ends[j + n] - ends[j])
            next_free = j + n
        else:
            seen.add(key)
    return chars
