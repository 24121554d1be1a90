"""Progress that is seen wherever the output goes: a live bar on a terminal, plain lines in a log.

A rich progress bar redraws one line in place, which a log file or a pod's log never shows. When the console is not
a terminal, `StepProgress` prints a plain line instead, at most every `every_s` seconds (and at the end), so a piped
`llmp run`, a REST job's run.log and `kubectl logs` all show how far a stage is.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress_every_s() -> float:
    """How often progress is printed (without a terminal) and written to the store: `LLMP_PROGRESS_EVERY_S`, 10 s."""
    raw = os.environ.get("LLMP_PROGRESS_EVERY_S") or "10"
    try:
        every = float(raw)
    except ValueError:
        every = math.nan
    if not every >= 0 or math.isinf(every):
        raise ValueError(f"LLMP_PROGRESS_EVERY_S: {raw!r} is not a number of seconds >= 0; unset it for the default 10")
    return every


class StepProgress:
    """Counts work done (steps, documents) out of an optional total; shows it as a bar or as periodic lines.

    `status` is a short text shown after the count (e.g. the last loss). `listener(done, total)` hears every update
    (a stage's live status, which writes to the store on its own heartbeat). Use as a context manager."""

    def __init__(
        self,
        console: Console,
        label: str,
        total: int | None = None,
        completed: int = 0,
        unit: str = "",
        every_s: float | None = None,
        listener: Callable[[int, int | None], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.console, self.label, self.total, self.unit = console, label, total, unit
        self.done, self.status = completed, ""
        self.every_s = every_s if every_s is not None else progress_every_s()
        self.listener, self.clock = listener, clock
        self._start_done, self._started = completed, clock()
        self._last_line = self._started
        self._bar: Progress | None = None
        if console.is_terminal:
            columns = [TextColumn(f"[bold]{label}[/]"), BarColumn(), MofNCompleteColumn() if total else TextColumn("")]
            columns += [TextColumn("{task.fields[status]}"), TimeRemainingColumn() if total else TimeElapsedColumn()]
            self._bar = Progress(*columns, console=console, transient=True)
            self._bar.add_task(label, total=total, completed=completed, status="")

    def __enter__(self) -> StepProgress:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(final_line=exc[0] is None)

    def start(self) -> StepProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def stop(self, final_line: bool = True) -> None:
        """Remove the bar; without one, print where it ended (unless nothing was done or it ended in an error)."""
        if self._bar is not None:
            self._bar.stop()
        elif final_line and self.done != self._start_done:
            self.console.print(self.line(), soft_wrap=True)

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def update(self, done: int, status: str | None = None) -> None:
        self.done = done
        if status is not None:
            self.status = status
        if self.listener is not None:
            self.listener(done, self.total)
        if self._bar is not None:
            self._bar.update(self._bar.task_ids[0], completed=done, status=self.status)
            return
        now = self.clock()
        if now - self._last_line >= self.every_s:
            self._last_line = now
            self.console.print(self.line(now), soft_wrap=True)

    def line(self, now: float | None = None) -> str:
        """`train: 120/1000 steps (12%), loss 3.2, 41 s elapsed, ETA 5 min 1 s`. Pure given the clock reading."""
        elapsed = (self.clock() if now is None else now) - self._started
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            parts = [f"{self.label}: {self.done:,}/{self.total:,}{unit} ({100 * self.done / self.total:.0f}%)"]
        else:
            parts = [f"{self.label}: {self.done:,}{unit}"]
        if self.status:
            parts.append(self.status)
        parts.append(f"{duration(elapsed)} elapsed")
        left = eta_s(self.done - self._start_done, self.total - self.done if self.total else None, elapsed)
        if left is not None:
            parts.append(f"ETA {duration(left)}")
        return ", ".join(parts)


def eta_s(done: int, remaining: int | None, elapsed_s: float) -> float | None:
    """Seconds left at the pace so far: None before any work is done or without a known total. Pure."""
    if remaining is None or done <= 0 or elapsed_s <= 0:
        return None
    return max(0.0, remaining * elapsed_s / done)


def duration(seconds: float) -> str:
    """`42 s`, `5 min 1 s`, `2 h 3 min`. Pure."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
