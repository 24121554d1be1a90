"""What a local job's `llmp run` log says about each stage. Pure.

The executor frames every stage it runs with one line before (`▶  NAME (KIND)`) and one after (`✓  NAME in 12.3s`
or `✗  NAME failed (exit code 1) after 4.5s`), and marks a stage it did not need to run (`⏭  NAME (KIND): up to
date, ...`); the stage's own output (progress lines `step 120/300 loss ...`, its traceback) sits in between. So the
log alone tells which stage runs now, which failed and why, the step it reached, and the lines of one stage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

STARTED = re.compile(r"^▶\s+(?P<stage>[a-z0-9][-a-z0-9]*) \(")
SUCCEEDED = re.compile(r"^✓\s+(?P<stage>[a-z0-9][-a-z0-9]*) in ")
FAILED = re.compile(r"^✗\s+(?P<stage>[a-z0-9][-a-z0-9]*) failed\b")
UP_TO_DATE = re.compile(r"^⏭\s+(?P<stage>[a-z0-9][-a-z0-9]*) \([^)]*\): up to date")
# `step 120/300 loss ...` (the training loop's record lines) or `train: 1,200/3,000 steps (40%) ...` (progress lines)
STEP = re.compile(r"\bstep (?P<step>\d+)/\d+\b|: (?P<done>[\d,]+)/[\d,]+ steps\b")
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b:?")
TAIL_LINES = 12


@dataclass
class StageLog:
    """One stage's part of the log: its lines (frame lines included) and how the frame ended."""

    outcome: str  # running (no closing line yet) | succeeded | failed | up to date
    lines: list[str]

    @property
    def step(self) -> int | None:
        """The last `step N/T` progress line's N."""
        for line in reversed(self.lines):
            found = STEP.search(line)
            if found:
                return int((found["step"] or found["done"]).replace(",", ""))
        return None

    @property
    def failure(self) -> str:
        """Why the stage failed: its last exception line(s) (a traceback under --debug), else its last lines between
        the frame lines (the one-line error a stage prints)."""
        body = [line for line in self.lines if not (FAILED.match(line) or STARTED.match(line))]
        return "\n".join(failure_cause(body) or body[-TAIL_LINES:])


def stage_of(line: str, current: str | None) -> tuple[str | None, str | None]:
    """(the stage `line` belongs to, the stage the lines after it belong to), given the stage the line before it
    was in: a start line opens a stage, a closing line is the stage's last."""
    line = line.rstrip("\r\n")
    if found := STARTED.match(line):
        return found["stage"], found["stage"]
    if (found := SUCCEEDED.match(line) or FAILED.match(line)) and found["stage"] == current:
        return current, None
    if found := UP_TO_DATE.match(line):
        return found["stage"], current
    return current, current


def stage_logs(log: str) -> dict[str, StageLog]:
    """Each stage the log mentions, with its lines and outcome (a stage run twice: its last run)."""
    out: dict[str, StageLog] = {}
    current: str | None = None
    for line in log.splitlines():
        owner, after = stage_of(line, current)
        if STARTED.match(line):
            out[owner] = StageLog("running", [])
        elif UP_TO_DATE.match(line):
            out[owner] = StageLog("up to date", [])
        if owner is not None and owner in out:
            out[owner].lines.append(line)
            if owner == current and after is None:
                out[owner].outcome = "succeeded" if SUCCEEDED.match(line) else "failed"
        current = after
    return out


def select_lines(log: str, stage: str | None, tail: int | None) -> list[str]:
    """The log's lines, only those of `stage` if given, the last `tail` of them if given."""
    if stage is None:
        lines = log.splitlines()
    else:
        found = stage_logs(log).get(stage)
        lines = found.lines if found else []
    return lines[-tail:] if tail is not None and tail > 0 else ([] if tail == 0 else lines)


def failure_message(log: str) -> str:
    """What a failed run's log says went wrong: the last exception (`SomeError: ...`, to the next blank or rule line)
    and then the log's last lines (the run's summary table)."""
    lines = log.splitlines()
    return "\n".join([*failure_cause(lines), *lines[-TAIL_LINES:]])


def failure_cause(lines: list[str]) -> list[str]:
    """The last exception in `lines` (`SomeError: ...` to the next blank or rule line); [] if there is none."""
    error = next((i for i in range(len(lines) - 1, -1, -1) if EXCEPTION_LINE.match(lines[i])), None)
    cause: list[str] = []
    if error is not None:
        for line in lines[error:]:
            if not line.strip() or line.startswith(("✗", "─", "┏", "┌")):
                break
            cause.append(line)
    return cause
