"""A fast text classifier over hashed word n-grams, trainable on labelled examples (the fastText recipe that
DCLM and FineWeb-Edu use for quality and Dolma for toxicity, without the embedding layer).

A document is the bag of its word unigrams and bigrams, hashed into `buckets` slots; the model is a softmax over
the mean of the slots' weight rows. Training is minibatch Adagrad with a decaying rate in numpy; inference on a batch is
one gather and one segmented sum. Models save to a single `.npz`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .document import Document, Drop
from .hashing import ngram_hashes, normalize_words


class HashedNgramClassifier:
    def __init__(self, labels: Sequence[str], buckets: int = 1 << 20, ngrams: int = 2):
        if len(set(labels)) < 2:
            raise ValueError(f"a classifier needs at least two distinct labels, got {list(labels)}")
        self.labels = list(labels)
        self.buckets = buckets
        self.ngrams = ngrams
        self.weights = np.zeros((buckets, len(self.labels)), dtype=np.float32)
        self.bias = np.zeros(len(self.labels), dtype=np.float32)

    def features(self, text: str) -> np.ndarray:
        """Bucket ids of the text's word 1..ngrams-grams (with repeats: frequent n-grams weigh more)."""
        normalized = normalize_words(text)
        parts = [ngram_hashes(normalized, n, whole_if_shorter=False) for n in range(1, self.ngrams + 1)]
        return (np.concatenate(parts) % np.uint64(self.buckets)).astype(np.int64)

    def _batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        feats = [self.features(t) for t in texts]
        lengths = np.array([max(1, len(f)) for f in feats])
        ids = np.concatenate([f if len(f) else np.zeros(1, dtype=np.int64) for f in feats])
        segments = np.repeat(np.arange(len(feats)), lengths)
        return ids, segments, lengths

    def _probabilities(self, ids: np.ndarray, segments: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        sums = np.zeros((len(lengths), len(self.labels)), dtype=np.float32)
        np.add.at(sums, segments, self.weights[ids])
        logits = sums / lengths[:, None] + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), len(labels)) class probabilities."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self._probabilities(*self._batch(texts))

    def score(self, texts: Sequence[str], label: str) -> np.ndarray:
        """The probability of `label` for each text."""
        return self.predict_proba(texts)[:, self.label_index(label)]

    def label_index(self, label: str) -> int:
        """The column of `label` in `predict_proba`; an error lists the labels this classifier knows."""
        if label not in self.labels:
            raise ValueError(f"label '{label}' is not one of this classifier's labels {self.labels}")
        return self.labels.index(label)

    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        epochs: int = 10,
        lr: float = 1.0,
        batch_size: int = 16,
        seed: int = 0,
    ) -> HashedNgramClassifier:
        """Train on labelled texts (in place); returns self. Features are hashed once, then reused every epoch."""
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        targets = np.array([self.label_index(label) for label in labels])
        feats = [self.features(t) for t in texts]
        rng = np.random.default_rng(seed)
        squared = np.zeros_like(self.weights)
        steps = epochs * -(-len(texts) // batch_size)
        step = 0
        for _ in range(epochs):
            order = rng.permutation(len(texts))
            for start in range(0, len(order), batch_size):
                chosen = order[start : start + batch_size]
                part = [feats[i] if len(feats[i]) else np.zeros(1, dtype=np.int64) for i in chosen]
                lengths = np.array([len(f) for f in part])
                ids, segments = np.concatenate(part), np.repeat(np.arange(len(part)), lengths)
                grad = self._probabilities(ids, segments, lengths)
                grad[np.arange(len(chosen)), targets[chosen]] -= 1.0  # d(cross-entropy)/d(logits)
                rows, inverse = np.unique(ids, return_inverse=True)
                row_grad = np.zeros((len(rows), len(self.labels)), dtype=np.float32)
                np.add.at(row_grad, inverse, (grad / lengths[:, None])[segments])
                # Adagrad per bucket: rare n-grams learn as fast as common ones, whatever the documents' lengths
                squared[rows] += row_grad**2
                rate = lr * (1.0 - step / steps)  # linear decay to zero, as fastText does
                self.weights[rows] -= rate * row_grad / (np.sqrt(squared[rows]) + 1e-8)
                self.bias -= rate * grad.mean(axis=0)
                step += 1
        return self

    def save(self, path: str | Path) -> None:
        meta = {"labels": self.labels, "buckets": self.buckets, "ngrams": self.ngrams}
        np.savez_compressed(Path(path), weights=self.weights, bias=self.bias, meta=np.array(json.dumps(meta)))

    @classmethod
    def load(cls, path: str | Path) -> HashedNgramClassifier:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"classifier model {path} does not exist; train one and `save()` it")
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            model = cls(meta["labels"], meta["buckets"], meta["ngrams"])
            model.weights, model.bias = data["weights"], data["bias"]
        return model


@dataclass(frozen=True)
class ClassifierConfig:
    """A `classifier` filter: keep documents whose probability of `label` is within [min_score, max_score]."""

    model: str
    label: str = "hq"
    min_score: float | None = 0.5
    max_score: float | None = None


class ClassifierStep:
    """Scores each batch with a `HashedNgramClassifier`; the score lands in `meta['<label>_score']`."""

    def __init__(self, config: ClassifierConfig):
        self.config = config
        self.model = HashedNgramClassifier.load(config.model)
        self.model.label_index(config.label)  # fail at build time, not on the first batch
        self.name = f"classifier_{config.label}"

    def __call__(self, doc: Document) -> Document | Drop:
        return self.process_batch([doc])[0]

    def process_batch(self, docs: list[Document]) -> list[Document | Drop]:
        c = self.config
        scores = self.model.score([d.text for d in docs], c.label)
        out: list[Document | Drop] = []
        for doc, score in zip(docs, scores.tolist(), strict=True):
            if c.min_score is not None and score < c.min_score:
                out.append(Drop(f"{c.label}_score_low"))
            elif c.max_score is not None and score > c.max_score:
                out.append(Drop(f"{c.label}_score_high"))
            else:
                out.append(doc.with_meta(**{f"{c.label}_score": round(score, 4)}))
        return out
