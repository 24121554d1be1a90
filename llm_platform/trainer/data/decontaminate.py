"""Decontamination: drop training documents that share word n-grams with evaluation sets, so benchmark scores
measure generalisation rather than memory (GPT-3 used 13-grams; so does this step by default).

Eval items are normalised like documents (lowercase, no punctuation or accents), and every n-gram of every item goes
into a sorted array of 64-bit hashes; a document's n-grams are looked up with one vectorised binary search. Items
shorter than `ngram` words but at least `min_item_words` long are matched whole, at their own length.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .document import Document, Drop
from .hashing import ngram_hashes, normalize_words


@dataclass(frozen=True)
class DecontaminationConfig:
    """The `decontaminate` filter (its eval sets are given as sources in the stage spec)."""

    ngram: int = 13
    min_item_words: int = 8
    max_matches: int = 0


class EvalIndex:
    """The n-gram hashes of a set of evaluation items, by n-gram length."""

    def __init__(self, items: Iterable[str], ngram: int = 13, min_item_words: int = 8):
        self.ngram = ngram
        by_length: dict[int, list[np.ndarray]] = {}
        self.items = 0
        for item in items:
            normalized = normalize_words(item)
            words = normalized.count(" ") + 1 if normalized else 0
            if words < min_item_words:
                continue
            self.items += 1
            n = min(ngram, words)
            by_length.setdefault(n, []).append(ngram_hashes(normalized, n, whole_if_shorter=False))
        self.hashes = {n: np.unique(np.concatenate(parts)) for n, parts in by_length.items()}
        if not self.hashes:
            raise ValueError(f"decontamination: no eval item has {min_item_words} or more words")

    def matches(self, text: str) -> int:
        """How many of the document's n-grams (at any indexed length) occur in an eval item."""
        normalized = normalize_words(text)
        found = 0
        for n, index in self.hashes.items():
            doc = ngram_hashes(normalized, n, whole_if_shorter=False)
            if doc.size:
                pos = np.minimum(np.searchsorted(index, doc), index.size - 1)
                found += int(np.count_nonzero(index[pos] == doc))
        return found


class DecontaminationStep:
    name = "decontaminate"

    def __init__(self, index: EvalIndex, config: DecontaminationConfig = DecontaminationConfig()):
        self.index = index
        self.config = config

    def __call__(self, doc: Document) -> Document | Drop:
        if self.index.matches(doc.text) > self.config.max_matches:
            return Drop("eval_overlap")
        return doc
