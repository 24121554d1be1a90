"""The data report of a run: documents kept and dropped per step (by reason, with examples), the language
histogram, document lengths before and after, near-duplicate cluster sizes. Written as `report.json`, plus PNG
plots (matplotlib, a core dependency, imported only when plotting); the JSON never depends on it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .steps import StepStats

LENGTH_BINS = 24  # bin i holds lengths in [2^(i-1), 2^i) characters; bin 0 is empty documents


@dataclass
class LengthHistogram:
    """Document lengths in characters, in power-of-two bins (mergeable across workers)."""

    counts: list[int] = field(default_factory=lambda: [0] * LENGTH_BINS)

    def add(self, length: int) -> None:
        self.counts[min(length.bit_length(), LENGTH_BINS - 1)] += 1

    def merge(self, other: LengthHistogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]

    def labels(self) -> list[str]:
        return ["0"] + [f"<{2**i}" for i in range(1, LENGTH_BINS - 1)] + [f">={2 ** (LENGTH_BINS - 2)}"]

    def to_dict(self) -> dict[str, Any]:
        return {"bins": "power-of-two character lengths", "counts": self.counts}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LengthHistogram:
        return cls(list(data["counts"]))


@dataclass
class RunReport:
    steps: dict[str, StepStats] = field(default_factory=dict)
    languages: Counter[str] = field(default_factory=Counter)
    lengths_in: LengthHistogram = field(default_factory=LengthHistogram)
    lengths_out: LengthHistogram = field(default_factory=LengthHistogram)
    duplicate_clusters: dict[int, int] = field(default_factory=dict)
    splits: Counter[str] = field(default_factory=Counter)

    def step(self, name: str) -> StepStats:
        return self.steps.setdefault(name, StepStats())

    def language_histogram(self) -> dict[str, int]:
        """Languages of kept documents plus those dropped for their language (from `language_<code>` reasons)."""
        counts = Counter(self.languages)
        dropped = self.steps.get("language")
        if dropped is not None:
            for reason, n in dropped.dropped.items():
                counts[reason.removeprefix("language_")] += n
        return dict(counts.most_common())

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": {name: stats.to_dict() for name, stats in self.steps.items()},
            "languages": self.language_histogram(),
            "lengths_in": self.lengths_in.to_dict(),
            "lengths_out": self.lengths_out.to_dict(),
            "duplicate_clusters": {str(k): v for k, v in sorted(self.duplicate_clusters.items())},
            "splits": dict(self.splits),
        }


def write_report(report: RunReport, folder: Path, plots: bool = True) -> list[Path]:
    """`report.json`, and the PNG plots when asked for and matplotlib is importable; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "report.json"
    path.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
    written = [path]
    if plots:
        try:
            import matplotlib
        except ImportError:
            return written
        matplotlib.use("Agg")
        written += _plot(report, folder)
    return written


def _plot(report: RunReport, folder: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    files = []
    names = list(report.steps)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 4))
    kept = [report.steps[n].kept for n in names]
    dropped = [report.steps[n].seen - report.steps[n].kept for n in names]
    ax.bar(names, kept, label="kept")
    ax.bar(names, dropped, bottom=kept, label="dropped")
    ax.set_ylabel("documents")
    ax.set_title("documents per step")
    ax.legend()
    ax.tick_params(axis="x", rotation=30)
    files.append(_save(fig, folder / "steps.png"))

    languages = report.language_histogram()
    if languages:
        top = list(languages.items())[:20]
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.bar([k for k, _ in top], [v for _, v in top])
        ax.set_ylabel("documents")
        ax.set_title("languages (kept and dropped)")
        files.append(_save(fig, folder / "languages.png"))

    fig, ax = plt.subplots(figsize=(10, 4))
    labels = report.lengths_in.labels()
    used = [i for i in range(LENGTH_BINS) if report.lengths_in.counts[i] or report.lengths_out.counts[i]]
    if used:
        span = range(used[0], used[-1] + 1)
        x = list(range(len(span)))
        ax.bar([i - 0.2 for i in x], [report.lengths_in.counts[i] for i in span], width=0.4, label="read")
        ax.bar([i + 0.2 for i in x], [report.lengths_out.counts[i] for i in span], width=0.4, label="kept")
        ax.set_xticks(x, [labels[i] for i in span], rotation=45)
    ax.set_xlabel("characters")
    ax.set_ylabel("documents")
    ax.set_title("document lengths")
    ax.legend()
    files.append(_save(fig, folder / "lengths.png"))
    return files


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
