"""The data pipeline's configuration, and the per-document steps it turns into.

Order (FineWeb's, with the optional steps slotted in): clean -> language -> filters in the order given ->
decontaminate -> PII -> MinHash signature. Per-document steps run in parallel on any engine; the two deduplication
passes need every document and run in the driver afterwards (see `run.py`). Configs are plain frozen dataclasses,
so the library takes the same settings from the stage spec, a script or a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .clean import CleanConfig, CleanStep
from .decontaminate import DecontaminationConfig, DecontaminationStep, EvalIndex
from .document import Document
from .filters import build_filter
from .language import LanguageConfig, LanguageStep
from .minhash import MinHashConfig, MinHasher
from .pii import PIIConfig, PIIStep
from .report import LengthHistogram
from .steps import Pipeline, Step, StepStats


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a data run does to documents. `filters` is an ordered tuple of (name, config) pairs,
    each name a key of `filters.FILTERS`."""

    clean: CleanConfig = CleanConfig()
    language: LanguageConfig | None = None
    filters: tuple[tuple[str, Any], ...] = ()
    decontaminate: DecontaminationConfig | None = None
    pii: PIIConfig | None = None
    exact_dedup: bool = True
    minhash: MinHashConfig | None = None
    batch_size: int = 256


class MinHashStep:
    """Attaches the document's LSH band keys (`meta['minhash']`) for the driver's clustering pass."""

    name = "minhash_signature"

    def __init__(self, config: MinHashConfig):
        self.hasher = MinHasher(config)

    def __call__(self, doc: Document) -> Document:
        return doc.with_meta(minhash=self.hasher.keys(doc.text))


def build_steps(config: PipelineConfig, eval_index: EvalIndex | None = None) -> list[Step]:
    steps: list[Step] = [CleanStep(config.clean)]
    if config.language is not None:
        steps.append(LanguageStep(config.language))
    steps += [build_filter(kind, cfg) for kind, cfg in config.filters]
    if config.decontaminate is not None:
        if eval_index is None:
            raise ValueError("decontamination needs eval sets: give `decontaminate.sources`")
        steps.append(DecontaminationStep(eval_index, config.decontaminate))
    if config.pii is not None:
        steps.append(PIIStep(config.pii))
    if config.minhash is not None:
        steps.append(MinHashStep(config.minhash))
    return steps


@dataclass
class BatchStats:
    """What a worker reports back with each batch: per-step counts and the lengths of the documents it read."""

    steps: dict[str, StepStats] = field(default_factory=dict)
    lengths_in: LengthHistogram = field(default_factory=LengthHistogram)

    def merge(self, other: BatchStats) -> None:
        for name, stats in other.steps.items():
            self.steps.setdefault(name, StepStats()).merge(stats)
        self.lengths_in.merge(other.lengths_in)

    def to_dict(self) -> dict[str, Any]:
        return {"steps": {k: v.to_dict() for k, v in self.steps.items()}, "lengths_in": self.lengths_in.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchStats:
        steps = {k: StepStats.from_dict(v) for k, v in data["steps"].items()}
        return cls(steps, LengthHistogram.from_dict(data["lengths_in"]))


class BatchProcessor:
    """The per-document steps, built once per worker process, applied batch by batch."""

    def __init__(self, config: PipelineConfig, eval_index: EvalIndex | None = None):
        self.pipeline = Pipeline(build_steps(config, eval_index))

    def __call__(self, docs: list[Document]) -> tuple[list[Document], BatchStats]:
        lengths = LengthHistogram()
        for doc in docs:
            lengths.add(len(doc.text))
        kept = self.pipeline.process_batch(docs)
        return kept, BatchStats(self.pipeline.take_stats(), lengths)
