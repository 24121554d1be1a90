"""Composable pipeline steps and the keep/drop statistics they leave behind.

A step is anything with a `name` and `__call__(doc) -> Document | Drop`: it returns the document (perhaps with new
text or meta) to keep it, or a `Drop` with a reason to remove it. Steps that are faster on many documents at once
(a language detector, a classifier) also offer `process_batch(docs) -> list[Document | Drop]`. A `Pipeline` runs
steps in order and counts, per step, what it saw, kept, rewrote and dropped (by reason), with a few dropped examples
so a person can check that a threshold does what they meant.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .document import Document, Drop

EXAMPLES_PER_REASON = 3
EXCERPT_CHARS = 300


class Step(Protocol):
    name: str

    def __call__(self, doc: Document) -> Document | Drop: ...


@dataclass
class StepStats:
    """What one step did. Mergeable, so workers' counts add up to the run's."""

    seen: int = 0
    kept: int = 0
    changed: int = 0
    seconds: float = 0.0
    dropped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def record(self, doc: Document, result: Document | Drop) -> None:
        self.seen += 1
        if isinstance(result, Drop):
            self.dropped[result.reason] += 1
            shown = self.examples.setdefault(result.reason, [])
            if len(shown) < EXAMPLES_PER_REASON:
                shown.append({"id": doc.id, "excerpt": doc.text[:EXCERPT_CHARS]})
        else:
            self.kept += 1
            self.changed += result.text != doc.text

    def merge(self, other: StepStats) -> None:
        self.seen += other.seen
        self.kept += other.kept
        self.changed += other.changed
        self.seconds += other.seconds
        self.dropped.update(other.dropped)
        for reason, shown in other.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine.extend(shown[: EXAMPLES_PER_REASON - len(mine)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "kept": self.kept,
            "changed": self.changed,
            "seconds": round(self.seconds, 3),
            "dropped": dict(self.dropped.most_common()),
            "examples": self.examples,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepStats:
        return cls(
            seen=data["seen"],
            kept=data["kept"],
            changed=data["changed"],
            seconds=data["seconds"],
            dropped=Counter(data["dropped"]),
            examples={k: list(v) for k, v in data["examples"].items()},
        )


class Pipeline:
    """Steps applied in order; a dropped document goes no further. Stats accumulate across calls."""

    def __init__(self, steps: Sequence[Step]):
        names = [s.name for s in steps]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"pipeline steps need distinct names; repeated: {', '.join(repeated)}")
        self.steps = list(steps)
        self.stats: dict[str, StepStats] = {s.name: StepStats() for s in self.steps}

    def process_batch(self, docs: Sequence[Document]) -> list[Document]:
        """The documents of `docs` that every step kept, as the last step left them."""
        alive = list(docs)
        for step in self.steps:
            if not alive:
                break
            stats = self.stats[step.name]
            t0 = time.perf_counter()
            batch = getattr(step, "process_batch", None)
            results = batch(alive) if batch is not None else [step(doc) for doc in alive]
            stats.seconds += time.perf_counter() - t0
            kept = []
            for doc, result in zip(alive, results, strict=True):
                stats.record(doc, result)
                if not isinstance(result, Drop):
                    kept.append(result)
            alive = kept
        return alive

    def run(self, docs: Iterable[Document], batch_size: int = 256) -> Iterator[Document]:
        """Stream `docs` through the steps in batches; memory stays bounded by one batch."""
        batch: list[Document] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) >= batch_size:
                yield from self.process_batch(batch)
                batch = []
        if batch:
            yield from self.process_batch(batch)

    def take_stats(self) -> dict[str, StepStats]:
        """The stats so far, resetting the pipeline's own (how workers hand their counts to the driver)."""
        taken, self.stats = self.stats, {s.name: StepStats() for s in self.steps}
        return taken


class CheckFilter:
    """A step from a pure check `check(text) -> reason or None`: drops the document when the check names a reason."""

    def __init__(self, name: str, check):
        self.name = name
        self.check = check

    def __call__(self, doc: Document) -> Document | Drop:
        reason = self.check(doc.text)
        return doc if reason is None else Drop(reason)
