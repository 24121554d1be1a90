"""Fuzzy deduplication: MinHash signatures of word 5-grams, LSH banding, and clusters of near-duplicates.

Two documents whose shingle sets have Jaccard similarity s share at least one of `bands` bands of `rows` minimum
hashes with probability 1 - (1 - s^rows)^bands; with datatrove's defaults (5-grams, 14 bands x 8 rows) that is 0.92
at s = 0.8 and 0.03 at s = 0.5. Candidate pairs are joined into clusters (connected components), and each cluster
keeps only its first document in input order, so the result does not depend on which pair was found first.

Shingle hashes are stable across processes and machines (see `hashing`); the permutations are multiply-shift
hashes, applied to all shingles of a document at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .hashing import mix, ngram_hashes, normalize_words

_MAX_CHUNK = 1 << 14  # shingles hashed per step: bounds memory on huge documents


@dataclass(frozen=True)
class MinHashConfig:
    """The `dedup.minhash` section. Defaults are datatrove's: word 5-grams, 14 bands of 8 rows."""

    ngram: int = 5
    bands: int = 14
    rows: int = 8
    seed: int = 1


def shingle_hashes(text: str, ngram: int) -> np.ndarray:
    """Stable 64-bit hashes of the document's word n-grams after normalisation (one shingle if it is shorter)."""
    return ngram_hashes(normalize_words(text), ngram)


class MinHasher:
    """Signatures of `bands * rows` minimum hashes, and their band keys for LSH."""

    def __init__(self, config: MinHashConfig = MinHashConfig()):
        self.config = config
        n = config.bands * config.rows
        rng = np.random.default_rng(config.seed)
        self._a = rng.integers(1, 2**63, size=n, dtype=np.uint64) | np.uint64(1)  # odd multipliers
        self._b = rng.integers(0, 2**63, size=n, dtype=np.uint64)
        self._band_weights = rng.integers(1, 2**63, size=config.rows, dtype=np.uint64) | np.uint64(1)
        self._band_ids = np.arange(config.bands, dtype=np.uint64)

    def signature(self, text: str) -> np.ndarray:
        """`bands * rows` uint32 minima over the document's shingles, one per multiply-shift hash function."""
        shingles = shingle_hashes(text, self.config.ngram)
        out = np.full(len(self._a), np.iinfo(np.uint32).max, dtype=np.uint32)
        with np.errstate(over="ignore"):
            for lo in range(0, len(shingles), _MAX_CHUNK):
                chunk = shingles[lo : lo + _MAX_CHUNK, None]
                hashed = ((chunk * self._a + self._b) >> np.uint64(32)).astype(np.uint32)
                np.minimum(out, hashed.min(axis=0), out=out)
        return out

    def band_keys(self, signature: np.ndarray) -> np.ndarray:
        """One uint64 key per band: documents sharing any band key are candidate near-duplicates."""
        rows = signature.reshape(self.config.bands, self.config.rows).astype(np.uint64)
        with np.errstate(over="ignore"):
            return mix((rows * self._band_weights).sum(axis=1, dtype=np.uint64) + self._band_ids)

    def keys(self, text: str) -> np.ndarray:
        return self.band_keys(self.signature(text))


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """The share of equal minimum hashes: an unbiased estimate of the shingle sets' Jaccard similarity."""
    return float(np.mean(a == b))


@dataclass
class Clusters:
    """Near-duplicate clusters over documents 0..n-1: `root[i]` is the first document of i's cluster."""

    root: np.ndarray

    @property
    def keep(self) -> np.ndarray:
        """True for documents that stay: the first of each cluster (and every document without a duplicate)."""
        return self.root == np.arange(len(self.root))

    def sizes(self) -> dict[int, int]:
        """Cluster size -> how many clusters of that size (clusters of 2 or more)."""
        _, counts = np.unique(self.root, return_counts=True)
        sizes, how_many = np.unique(counts[counts > 1], return_counts=True)
        return {int(s): int(c) for s, c in zip(sizes, how_many, strict=True)}


def cluster(band_keys: np.ndarray) -> Clusters:
    """Connected components of documents that share a band key, from an (n_docs, bands) array of keys.

    Equal keys are found by sorting each band's column, so the work is O(n log n) in numpy plus a union-find pass
    over the candidate pairs only."""
    n = band_keys.shape[0]
    parent = np.arange(n)

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    for band in range(band_keys.shape[1] if n else 0):
        column = band_keys[:, band]
        order = np.argsort(column, kind="stable")
        same = np.flatnonzero(column[order][1:] == column[order][:-1])
        if same.size == 0:
            continue
        # in each run of equal keys, link every member to the run's first (smallest index, thanks to stable sort)
        run_start = np.ones(n, dtype=bool)
        run_start[same + 1] = False
        heads = np.maximum.accumulate(np.where(run_start, np.arange(n), 0))
        for member, head in zip(order[same + 1].tolist(), order[heads[same + 1]].tolist(), strict=True):
            a, b = find(member), find(head)
            if a != b:
                parent[max(a, b)] = min(a, b)
    while True:  # pointer jumping: every document points straight at its cluster's first document
        jumped = parent[parent]
        if np.array_equal(jumped, parent):
            return Clusters(parent)
        parent = jumped
