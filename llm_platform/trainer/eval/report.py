"""The eval stage's human-readable report: `report/eval.md` with the scores in tables and `report/scores.png` (one bar
per benchmark metric, and pass@k curves where code was sampled several times per problem).

The plot needs matplotlib (a core dependency); in an install without it the Markdown says so and the rest is
written as usual.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .metrics import pass_at_k

PLOT = "scores.png"


def pass_at_k_curve(verdicts: Sequence[Sequence[bool]]) -> dict[int, float]:
    """pass@k for k = 1 .. n (the fewest samples any problem has), averaged over problems, from each problem's
    sandbox verdicts."""
    n = min((len(v) for v in verdicts), default=0)
    return {k: sum(pass_at_k(len(v), sum(v), k) for v in verdicts) / len(verdicts) for k in range(1, n + 1)}


def pass_at_k_curves(samples: Mapping[str, Sequence[dict]]) -> dict[str, dict[int, float]]:
    """The pass@k curve of every task whose logged samples hold sandbox verdicts for several samples per problem."""
    curves = {}
    for task, records in samples.items():
        verdicts = [r["filtered_resps"][0] for r in records if r.get("filter") == "sandbox"]
        if verdicts and all(isinstance(v, list) for v in verdicts) and min(len(v) for v in verdicts) > 1:
            curves[task] = pass_at_k_curve(verdicts)
    return curves


_PERCENT_SCALE = re.compile(r"(bleu|chrf|rouge1|rouge2|rougel)(_max)?$")


def _scaled(value: float, name: str) -> tuple[float, str]:
    """Scores on a 0-100 scale (BLEU, chrF, ROUGE; not their 0-1 `_acc`) drawn as fractions, so every bar shares one
    axis."""
    if _PERCENT_SCALE.search(name):
        return value / 100, f"{name} (/100)"
    return value, name


def plot_scores(scores: Mapping[str, float], curves: Mapping[str, Mapping[int, float]], path: Path) -> bool:
    """Write the PNG; False (and nothing written) when matplotlib is not installed."""
    if importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 1 + bool(curves)
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, max(3.0, 0.35 * len(scores) + 1.5)), squeeze=False)
    bars = axes[0][0]
    # differences between two scores (TruthfulQA's *_diff) can be negative and are no score of their own
    labelled = [_scaled(value, name) for name, value in scores.items() if not name.endswith("_diff")]
    bars.barh([label for _, label in labelled], [value for value, _ in labelled], color="#4C72B0")
    bars.set_xlim(0, 1)
    bars.invert_yaxis()
    bars.set_xlabel("score")
    bars.set_title("benchmark scores")
    if curves:
        ax = axes[0][1]
        for task, curve in curves.items():
            ax.plot(list(curve), list(curve.values()), marker="o", label=task)
        ax.set_xlabel("k (samples)")
        ax.set_ylabel("pass@k")
        ax.set_ylim(0, 1)
        ax.set_title("pass@k")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def markdown(report: Mapping[str, Any], curves: Mapping[str, Mapping[int, float]], plotted: bool) -> str:
    """The report as Markdown: perplexity with its context length, each benchmark metric with its standard error and
    example count, pass@k curves, and the plot (or why there is none)."""
    lines = [f"# Evaluation of `{report.get('model', '?')}`", ""]
    if ppl := report.get("perplexity"):
        lines += [
            "## Held-out data",
            "",
            "| loss | perplexity | token accuracy | tokens | context |",
            "|---:|---:|---:|---:|---:|",
            f"| {ppl['loss']:.4f} | {ppl['perplexity']:.3f} | {ppl.get('token_accuracy', float('nan')):.4f} "
            f"| {ppl['tokens']:,} | {ppl.get('seq_len', '?')} |",
            "",
        ]
    if bench := report.get("benchmarks"):
        lines += ["## Benchmarks", "", "| task | metric | value | stderr | examples |", "|---|---|---:|---:|---:|"]
        for task, values in bench.get("results", {}).items():
            n = bench.get("n-samples", {}).get(task, {}).get("effective", "")
            for key, value in values.items():
                if "," not in key or "_stderr" in key or not isinstance(value, int | float):
                    continue
                metric, _, filter_name = key.partition(",")
                stderr = values.get(f"{metric}_stderr,{filter_name}", "")
                shown = metric if filter_name == "none" else f"{metric} ({filter_name})"
                lines.append(f"| {task} | {shown} | {value:.4f} | {_number(stderr)} | {n} |")
        lines += ["", f"lm-eval {bench.get('lm_eval_version', '?')}, limit {bench.get('limit')}.", ""]
    if sandbox := report.get("sandbox"):
        lines += [f"Generated code ran in the sandbox with {sandbox} isolation.", ""]
    if curves:
        lines += ["## pass@k", ""]
        for task, curve in curves.items():
            lines += [f"{task}: " + ", ".join(f"pass@{k} {v:.4f}" for k, v in curve.items()), ""]
    if baselines := report.get("baselines"):
        scores = report.get("scores", {})
        lines += [
            "## Baselines",
            "",
            "| baseline | metric | baseline value | this model | delta |",
            "|---|---|---:|---:|---:|",
        ]
        for name, numbers in baselines.items():
            for metric, value in numbers.items():
                ours = scores.get(metric)
                delta = "" if ours is None else f"{ours - value:+.4f}"
                lines.append(
                    f"| {name} | {metric} | {value:.4f} | {_number(ours) if ours is not None else 'n/a'} | {delta} |"
                )
        lines.append("")
    if plotted:
        lines += [f"![scores]({PLOT})", ""]
    elif report.get("scores"):
        lines += ["(No plot: matplotlib is not installed; pip install matplotlib.)", ""]
    return "\n".join(lines)


def write_report(folder: Path, report: Mapping[str, Any], samples: Mapping[str, Sequence[dict]] | None) -> Path:
    """`folder/eval.md` (and `folder/scores.png` when there are scores to plot); returns the Markdown's path."""
    curves = pass_at_k_curves(samples or {})
    scores = {k: v for k, v in report.get("scores", {}).items() if k not in ("val_loss", "perplexity")}
    plotted = bool(scores or curves) and plot_scores(scores, curves, folder / PLOT)
    path = folder / "eval.md"
    path.write_text(markdown(report, curves, plotted), encoding="utf-8")
    return path
