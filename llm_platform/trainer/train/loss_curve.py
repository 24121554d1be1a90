"""The loss-curve picture every training stage leaves next to its `train_log.jsonl`: `loss_curve.png`.

One panel with the training loss at each logged step and the validation loss where it was measured; a DPO run adds
a second panel with its reward margin and accuracy (`rewards/margins`, `rewards/accuracies`). Drawn with matplotlib's
Agg backend (no display needed); without matplotlib nothing is drawn and `plot_loss_curve` returns None (the
stages then print nothing about it).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

FILE = "loss_curve.png"
TRAIN_COLOR = "#1f77b4"  # the training loss line; tests find the curve by this colour
VAL_COLOR = "#d62728"
MARGIN_COLOR = "#2ca02c"
ACCURACY_COLOR = "#9467bd"


def series(records: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the records that carry `key`. Pure."""
    points = [(int(r["step"]), float(r[key])) for r in records if isinstance(r.get(key), int | float) and "step" in r]
    return [s for s, _ in points], [v for _, v in points]


def plot_loss_curve(records: Sequence[Mapping[str, Any]], path: Path, title: str) -> Path | None:
    """Write the PNG of `records` (the training log) to `path`; None when matplotlib is missing or nothing was
    logged."""
    steps, losses = series(records, "loss")
    if not steps or importlib.util.find_spec("matplotlib") is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    margin_steps, margins = series(records, "rewards/margins")
    panels = 2 if margin_steps else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 3.6), squeeze=False)
    ax = axes[0][0]
    ax.plot(steps, losses, color=TRAIN_COLOR, linewidth=2, marker="o" if len(steps) < 30 else None, label="train")
    val_steps, val = series(records, "val_loss")
    if val_steps:
        ax.plot(val_steps, val, color=VAL_COLOR, linestyle="--", marker="s", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    if margin_steps:
        right = axes[0][1]
        right.plot(margin_steps, margins, color=MARGIN_COLOR, linewidth=2, label="reward margin")
        right.set_xlabel("step")
        right.set_ylabel("chosen - rejected reward")
        right.grid(alpha=0.3)
        acc_steps, accuracy = series(records, "rewards/accuracies")
        lines = right.get_lines()
        if acc_steps:
            share = right.twinx()
            lines += share.plot(acc_steps, accuracy, color=ACCURACY_COLOR, linestyle=":", label="reward accuracy")
            share.set_ylim(0, 1.05)
            share.set_ylabel("reward accuracy")
        right.legend(lines, [line.get_label() for line in lines], loc="upper left")
        right.set_title("DPO rewards")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
