"""What the loop shows while it runs: training throughput in windows between log records, and one console line
per record (rank 0 only)."""

from __future__ import annotations

import time
from typing import Any

import torch
from rich.console import Console

from llm_platform.trainer.progress import StepProgress


class Throughput:
    """Training tokens per second, in windows between log records. The clock starts after the first step (which
    compiles and warms up) and restarts after evaluations and checkpoints, so it counts training only."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.start: float | None = None
        self.tokens = 0
        self.windows: list[tuple[int, float]] = []  # (tokens, seconds)

    def count(self, tokens: int) -> None:
        """A step of `tokens` is done."""
        if self.start is None:
            sync_device(self.device)
            self.start = time.perf_counter()
        else:
            self.tokens += tokens

    def lap(self) -> tuple[int, float] | None:
        """(tokens, seconds) since the window opened, and a new window; None while no tokens were counted."""
        sync_device(self.device)
        if not self.tokens:
            return None
        window = (self.tokens, time.perf_counter() - self.start)
        self.windows.append(window)
        self.start, self.tokens = time.perf_counter(), 0
        return window

    def restart(self) -> None:
        sync_device(self.device)
        self.start = time.perf_counter()

    def mean(self) -> float | None:
        tokens = sum(t for t, _ in self.windows)
        return tokens / sum(s for _, s in self.windows) if tokens else None


def sync_device(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def print_record(progress: StepProgress | None, console: Console, record: dict[str, Any], total: int) -> None:
    """One console line for `record` (above the live bar: `progress` draws on the same console), and its loss as the
    bar's status."""
    parts = [f"step {record['step']}/{total}", f"loss {record['loss']:.4f}", f"lr {record['lr']:.2e}"]
    parts.append(f"grad norm {record['grad_norm']:.3f}")
    if "tokens_per_s" in record:
        parts.append(f"{record['tokens_per_s']:,.0f} tok/s")
    if record.get("mfu") is not None:
        parts.append(f"MFU {100 * record['mfu']:.1f}%")
    if "val_loss" in record:
        parts.append(f"val loss {record['val_loss']:.4f}")
    console.print("  ".join(parts))
    if progress is not None:
        progress.status = f"loss {record['loss']:.4f}"
