"""Comparing evaluated runs: each run's headline scores with bootstrap confidence intervals over its examples, and
each later run's difference from the first (paired over the same examples where both scored the same ones).

    runs = [run for path in paths for run in load_runs(path)]
    rows = compare(runs)        # one Row per metric, cells in run order

A run is an eval report folder (`report/eval.json`, with `report/samples/<task>.jsonl` per-example records) or a
run's store folder holding eval stages. Metrics with no per-example values (perplexity, corpus BLEU) get no interval.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .benchmarks import metric_name
from .task_names import GROUPS

ITERATIONS = 1000


@dataclass
class Run:
    name: str
    scores: dict[str, float]
    # metric -> {example key: value}, for metrics whose score is the mean over examples
    items: dict[str, dict[str, float]] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    value: float | None
    low: float | None = None
    high: float | None = None
    delta: float | None = None  # vs the first run
    delta_low: float | None = None
    delta_high: float | None = None


@dataclass(frozen=True)
class Row:
    metric: str
    cells: tuple[Cell, ...]


def _report_folder(path: Path) -> Path | None:
    for candidate in (path, path / "report"):
        if (candidate / "eval.json").is_file():
            return candidate
    if path.is_file() and path.name == "eval.json":
        return path.parent
    return None


def _per_example(samples_dir: Path) -> dict[str, dict[str, float]]:
    """metric -> {doc id: value} from lm-eval's per-example records (each names its metrics under "metrics")."""
    items: dict[str, dict[str, float]] = {}
    for file in sorted(samples_dir.glob("*.jsonl")) if samples_dir.is_dir() else []:
        for line in file.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            for metric in record.get("metrics", []):
                value = record.get(metric)
                if isinstance(value, bool | int | float):
                    name = metric_name(file.stem, f"{metric},{record.get('filter', 'none')}")
                    items.setdefault(name, {})[str(record.get("doc_id"))] = float(value)
    return items


def _load_report(folder: Path, name: str) -> Run:
    report = json.loads((folder / "eval.json").read_text(encoding="utf-8"))
    scores = report.get("scores")
    if not isinstance(scores, dict):
        raise ValueError(f"{folder / 'eval.json'}: no 'scores'; it was written by an older version, run the eval again")
    items = _with_groups(_per_example(folder / "samples"), scores)
    return Run(name, scores, {k: v for k, v in items.items() if k in scores}, report.get("baselines", {}))


def _with_groups(items: dict[str, dict[str, float]], scores: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """A group's metric (mmlu_acc) over the pooled examples of its members (mmlu_anatomy_acc, ...): lm-eval weights
    the members by size, which is the plain mean over the pool."""
    for group, members in GROUPS.items():
        for metric in scores:
            if not metric.startswith(f"{group}_") or metric in items:
                continue
            rest = metric.removeprefix(f"{group}_")
            pooled = {
                f"{member}/{key}": value
                for member in members
                for key, value in items.get(f"{member}_{rest}", {}).items()
            }
            if pooled:
                items[metric] = pooled
    return items


def load_runs(path: str | Path) -> list[Run]:
    """The runs at `path`: an eval report folder (or its eval.json), or a run's store folder with eval stages."""
    path = Path(path)
    if (folder := _report_folder(path)) is not None:
        return [_load_report(folder, path.name if path.is_dir() else path.parent.name)]
    runs = []
    if path.is_dir():
        from llm_platform.storage import ArtifactStore

        store = ArtifactStore.open(str(path))
        for manifest_file in sorted(path.glob("*/manifest.json")):
            stage = manifest_file.parent.name
            manifest = store.manifest(stage)
            if manifest is not None and manifest.meta.get("kind") == "eval":
                runs.append(_load_report(store.fetch(stage) / "report", f"{path.name}/{stage}"))
    if not runs:
        raise ValueError(
            f"{path}: no eval report here; give an eval report folder (holding eval.json or report/eval.json) or a "
            "run folder whose store holds an eval stage"
        )
    return runs


def bootstrap_mean(values: Sequence[float], iterations: int = ITERATIONS, level: float = 0.95, seed: int = 0):
    """(low, high) percentile bootstrap interval of the mean of `values`."""
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), (iterations, len(data)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def bootstrap_delta(
    base: Mapping[str, float],
    other: Mapping[str, float],
    iterations: int = ITERATIONS,
    level: float = 0.95,
    seed: int = 0,
):
    """(low, high) bootstrap interval of mean(other) - mean(base): paired over the examples when both scored the same
    ones (the usual case: one benchmark, two checkpoints), else each run resampled on its own."""
    rng = np.random.default_rng(seed)
    tail = (1 - level) / 2 * 100
    if base.keys() == other.keys():
        keys = sorted(base)
        diff = np.array([other[k] - base[k] for k in keys])
        deltas = diff[rng.integers(0, len(diff), (iterations, len(diff)))].mean(axis=1)
    else:
        a, b = np.array(list(base.values())), np.array(list(other.values()))
        deltas = b[rng.integers(0, len(b), (iterations, len(b)))].mean(axis=1) - a[
            rng.integers(0, len(a), (iterations, len(a)))
        ].mean(axis=1)
    return float(np.percentile(deltas, tail)), float(np.percentile(deltas, 100 - tail))


def compare(runs: Sequence[Run], iterations: int = ITERATIONS, level: float = 0.95) -> list[Row]:
    """One row per metric any run reports, cells in run order; intervals where per-example values exist."""
    if not runs:
        raise ValueError("nothing to compare: give at least one run")
    metrics = sorted({metric for run in runs for metric in run.scores})
    rows = []
    for metric in metrics:
        cells = []
        first = runs[0]
        for run in runs:
            value = run.scores.get(metric)
            items = run.items.get(metric)
            low = high = delta = delta_low = delta_high = None
            if value is not None and items and len(items) > 1:
                low, high = bootstrap_mean(list(items.values()), iterations, level)
            if run is not first and value is not None and first.scores.get(metric) is not None:
                delta = value - first.scores[metric]
                base_items = first.items.get(metric)
                if items and base_items and len(items) > 1 and len(base_items) > 1:
                    delta_low, delta_high = bootstrap_delta(base_items, items, iterations, level)
            cells.append(Cell(value, low, high, delta, delta_low, delta_high))
        rows.append(Row(metric, tuple(cells)))
    return rows
