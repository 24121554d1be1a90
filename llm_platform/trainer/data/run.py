"""A whole data run: per-document steps on an engine, then exact and fuzzy deduplication, the train/validation
split and the corpus shards, with the report of everything that happened.

Deduplication needs all documents, so it runs here in the driver on what the steps kept: exact dedup as documents
stream in (16 bytes per document), MinHash clustering after the stream ends, over the band keys the workers computed
(8 bytes per band per document); the survivors wait in a scratch spool until the clusters are known.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .corpus import CorpusWriter
from .decontaminate import EvalIndex
from .dedup import ExactDedup, content_hash, is_validation_hash
from .document import Document, Drop
from .engines import Batch, local_batches, ray_batches
from .minhash import cluster
from .pipeline import BatchStats, PipelineConfig
from .report import RunReport


def run_pipeline(
    sources: Sequence[Any],
    config: PipelineConfig,
    out: Path,
    scratch: Path,
    *,
    val_fraction: float = 0.0,
    engine: str = "local",
    workers: int = 1,
    eval_index: EvalIndex | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> RunReport:
    """Process `sources` into the corpus folder `out` (`{train,val}-NNNNN.jsonl`); returns the run's report.

    `workers`: local processes (`engine='local'`) or Ray actors (`engine='ray'`)."""
    if engine == "ray":
        batches: Iterator[Batch] = ray_batches(sources, config, eval_index, workers=workers)
    elif engine == "local":
        batches = local_batches(sources, config, eval_index, processes=workers)
    else:
        raise ValueError(f"engine '{engine}' is not one of: local, ray")
    report = RunReport()
    totals = BatchStats()
    exact = ExactDedup() if config.exact_dedup else None
    writer = CorpusWriter(out)
    spool = _Spool(scratch / "minhash-spool.jsonl") if config.minhash is not None else None
    try:
        for docs, stats in batches:
            totals.merge(stats)
            if on_batch is not None:
                on_batch(stats_seen(stats))
            for doc in docs:
                digest = content_hash(doc.text)
                if exact is not None:
                    verdict = doc if exact.is_new_hash(digest) else Drop("exact_duplicate")
                    report.step("exact_dedup").record(doc, verdict)
                    if isinstance(verdict, Drop):
                        continue
                if spool is not None:
                    spool.add(doc)
                else:
                    _write(writer, report, doc, val_fraction, digest)
        if spool is not None:
            _resolve_near_duplicates(spool, writer, report, val_fraction)
    finally:
        writer.close()
        if spool is not None:
            spool.close()
    report.steps = {**totals.steps, **report.steps}
    report.lengths_in = totals.lengths_in
    return report


def stats_seen(stats: BatchStats) -> int:
    """Documents a batch read (what its first step saw)."""
    first = next(iter(stats.steps.values()), None)
    return first.seen if first is not None else 0


def _write(
    writer: CorpusWriter, report: RunReport, doc: Document, val_fraction: float, digest: bytes | None = None
) -> None:
    split = "val" if is_validation_hash(digest or content_hash(doc.text), val_fraction) else "train"
    writer.write(split, doc.id, doc.text)
    report.splits[f"{split}_docs"] += 1
    report.splits[f"{split}_chars"] += len(doc.text)
    report.lengths_out.add(len(doc.text))
    if "language" in doc.meta:
        report.languages[doc.meta["language"]] += 1


class _Spool:
    """Documents waiting for the near-duplicate decision: text on disk, band keys in memory."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.file = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.keys: list[np.ndarray] = []

    def add(self, doc: Document) -> None:
        self.keys.append(doc.meta["minhash"])
        meta = {k: v for k, v in doc.meta.items() if k != "minhash"}
        self.file.write(json.dumps({"id": doc.id, "text": doc.text, "source": doc.source, "meta": meta}) + "\n")

    def documents(self) -> Iterator[Document]:
        self.file.close()
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                yield Document(record["id"], record["text"], record["source"], record["meta"])

    def close(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


def _resolve_near_duplicates(spool: _Spool, writer: CorpusWriter, report: RunReport, val_fraction: float) -> None:
    clusters = cluster(np.stack(spool.keys) if spool.keys else np.zeros((0, 1), dtype=np.uint64))
    keep = clusters.keep
    report.duplicate_clusters = clusters.sizes()
    stats = report.step("minhash_dedup")
    for i, doc in enumerate(spool.documents()):
        verdict: Document | Drop = doc if keep[i] else Drop("near_duplicate")
        stats.record(doc, verdict)
        if keep[i]:
            _write(writer, report, doc, val_fraction)
