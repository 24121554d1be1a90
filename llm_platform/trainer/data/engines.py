"""Where the per-document steps run: in this process, in a pool of local processes, or on a Ray cluster.

Each engine yields `(kept documents, BatchStats)` per batch. The local engines keep input order, so a run's output
is the same for any number of processes. The Ray engine splits every source into shards and applies
the steps with `ray.data` `map_batches` over the shards, on a pool of actors that each build the steps once; with
order preserved it is deterministic for a given shard count.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from .decontaminate import EvalIndex
from .document import Document
from .pipeline import BatchProcessor, BatchStats, PipelineConfig
from .sources import iter_documents

Batch = tuple[list[Document], BatchStats]


def _batches(docs: Iterable[Document], size: int) -> Iterator[list[Document]]:
    it = iter(docs)
    while batch := list(itertools.islice(it, size)):
        yield batch


def read_sources(sources: Sequence[Any]) -> Iterator[Document]:
    for source in sources:
        yield from iter_documents(source)


def local_batches(
    sources: Sequence[Any], config: PipelineConfig, eval_index: EvalIndex | None = None, processes: int = 1
) -> Iterator[Batch]:
    """The steps over every source, in this process (`processes=1`) or a pool that keeps input order."""
    batches = _batches(read_sources(sources), config.batch_size)
    if processes <= 1:
        processor = BatchProcessor(config, eval_index)
        yield from (processor(batch) for batch in batches)
        return
    ctx = multiprocessing.get_context("spawn")  # safe with threads (lingua, torch) in the parent
    with ctx.Pool(processes, initializer=_init_worker, initargs=(config, eval_index)) as pool:
        yield from pool.imap(_process_in_worker, batches, chunksize=1)


_WORKER: BatchProcessor | None = None


def _init_worker(config: PipelineConfig, eval_index: EvalIndex | None) -> None:
    global _WORKER
    _WORKER = BatchProcessor(config, eval_index)


def _process_in_worker(batch: list[Document]) -> Batch:
    return _WORKER(batch)


# ---------------------------------------------------------------- Ray Data

_COLUMNS = ("kind", "id", "text", "source", "meta", "minhash")


def _to_columns(docs: list[Document], stats: BatchStats) -> dict[str, np.ndarray]:
    """A batch as Ray Data columns: one row per kept document, plus one `stats` row."""
    rows = [
        ("doc", d.id, d.text, d.source, json.dumps({k: v for k, v in d.meta.items() if k != "minhash"}),
         d.meta["minhash"].tobytes() if "minhash" in d.meta else b"")
        for d in docs
    ]  # fmt: skip
    rows.append(("stats", "", "", "", json.dumps(stats.to_dict()), b""))
    return {name: np.array([r[i] for r in rows], dtype=object) for i, name in enumerate(_COLUMNS)}


def _from_columns(batch: dict[str, np.ndarray]) -> Batch:
    docs: list[Document] = []
    stats = BatchStats()
    for kind, doc_id, text, source, meta, minhash in zip(*(batch[c] for c in _COLUMNS), strict=True):
        if kind == "stats":
            stats.merge(BatchStats.from_dict(json.loads(meta)))
            continue
        values = json.loads(meta)
        if minhash:
            values["minhash"] = np.frombuffer(minhash, dtype=np.uint64)
        docs.append(Document(id=str(doc_id), text=str(text), source=str(source), meta=values))
    return docs, stats


class _RayShardWorker:
    """A Ray actor with the steps built once: given a batch of shard descriptions, it reads each shard and yields
    its processed documents batch by batch (a generator, so a shard never sits in memory whole)."""

    def __init__(self, sources: list[Any], config: PipelineConfig, eval_index: EvalIndex | None):
        self.sources = sources
        self.batch_size = config.batch_size
        self.processor = BatchProcessor(config, eval_index)

    def __call__(self, shards: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        for source, shard, num_shards in zip(shards["source"], shards["shard"], shards["num_shards"], strict=True):
            docs = iter_documents(self.sources[int(source)], int(shard), int(num_shards))
            for batch in _batches(docs, self.batch_size):
                yield _to_columns(*self.processor(batch))


def ray_batches(
    sources: Sequence[Any],
    config: PipelineConfig,
    eval_index: EvalIndex | None = None,
    workers: int = 2,
    shards_per_source: int | None = None,
) -> Iterator[Batch]:
    """The steps as a Ray Data pipeline: `map_batches` over the sources' shards, on a pool of `workers` actors that
    each read a shard and process it (one CPU per actor, reading included).

    Uses the Ray cluster this process is connected to (`ray.init` already called, or `RAY_ADDRESS` set as in a
    RayJob); otherwise starts a local one."""
    try:
        import ray
    except ImportError as e:
        raise ImportError("`engine: ray` needs Ray Data: pip install 'llm-platform[ray]'") from e
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    n = shards_per_source or 2 * workers
    shards = [{"source": i, "shard": k, "num_shards": n} for i in range(len(sources)) for k in range(n)]
    dataset = ray.data.from_items(shards, override_num_blocks=len(shards)).map_batches(
        _RayShardWorker,
        fn_constructor_kwargs={"sources": list(sources), "config": config, "eval_index": eval_index},
        batch_size=1,
        batch_format="numpy",
        concurrency=workers,
    )
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        yield _from_columns(batch)
