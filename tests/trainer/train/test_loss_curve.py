"""The loss-curve PNG is a real plot: decoded with PIL, it has a real size, many colours, a drawn plotting area,
and the training-loss line falls from left to right when the loss falls."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from llm_platform.trainer.train.loss_curve import TRAIN_COLOR, plot_loss_curve, series

pytest.importorskip("matplotlib")


def falling(steps: int = 60) -> list[dict]:
    records = [{"step": s, "loss": 2 + 5 * math.exp(-s / 15), "lr": 1e-3} for s in range(1, steps + 1)]
    for record in records[19::20]:
        record["val_loss"] = record["loss"] + 0.1
    return records


def line_pixels(image: np.ndarray, color: str) -> np.ndarray:
    """(row, column) of the pixels within a small distance of `color`."""
    target = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])
    return np.argwhere(np.abs(image[..., :3].astype(int) - target).sum(-1) < 40)


def test_series_takes_the_records_that_carry_the_key():
    records = falling(40)
    assert series(records, "val_loss") == ([20, 40], [records[19]["val_loss"], records[39]["val_loss"]])
    assert series([{"step": 1}], "loss") == ([], [])


def test_a_falling_loss_is_drawn_as_a_falling_line(tmp_path):
    path = plot_loss_curve(falling(), tmp_path / "loss_curve.png", "pretrain")
    image = np.asarray(Image.open(path).convert("RGB"))
    height, width, _ = image.shape
    assert width >= 400 and height >= 250
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50  # antialiased lines, text, markers: not a flat fill
    assert (image < 250).any(-1).mean() > 0.02  # ink on the canvas
    curve = line_pixels(image, TRAIN_COLOR)
    assert len(curve) > 200, "the training-loss line is drawn"
    columns = np.unique(curve[:, 1])
    assert columns.max() - columns.min() > width / 2  # it spans the plot from left to right
    # the line's mean height per column: image rows grow downwards, so a falling loss has rows growing left to right
    first, last = columns[: len(columns) // 5], columns[-len(columns) // 5 :]
    rows_at = lambda cols: curve[np.isin(curve[:, 1], cols), 0].mean()
    assert rows_at(last) > rows_at(first) + height / 4


def test_a_dpo_log_gets_a_second_panel_and_an_empty_log_no_picture(tmp_path):
    records = [
        {"step": s, "loss": 0.69 - 0.01 * s, "rewards/margins": 0.05 * s, "rewards/accuracies": 0.5 + 0.05 * s}
        for s in range(1, 11)
    ]
    wide = Image.open(plot_loss_curve(records, tmp_path / "dpo.png", "dpo"))
    narrow = Image.open(plot_loss_curve([{"step": 1, "loss": 1.0}], tmp_path / "one.png", "x"))
    assert wide.width > 1.5 * narrow.width
    assert plot_loss_curve([], tmp_path / "none.png", "x") is None and not (tmp_path / "none.png").exists()
