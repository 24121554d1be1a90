"""What a local job's `llmp run` log says about each stage. Pure.

The executor frames every stage it runs with one line before (`▶  NAME (KIND)`) and one after (`✓  NAME in 12.3s`
or `✗  NAME failed (exit code 1) after 4.5s`), and marks a stage it did not need to run (`⏭  NAME (KIND): up to
date, ...`); the stage's own output (progress lines `step 120/300 loss ...`, its traceback) sits in between. So the
log alone tells which stage runs now, which failed and why, the step it reached, and the lines of one stage.

The logs route needs a stage's lines (`stage_logs`); a status needs far less: each stage's outcome, its step and, if
it failed, its error, and the run's failure message. `LogSummary` folds the lines into just that as they come,
keeping a bounded number of them, so a log can be summarised once and then only for what is appended to it
(`log_summaries.LogSummaries` does that for the jobs API's status reads).
"""

from __future__ import annotations

import copy
import re
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field

STARTED = re.compile(r"^▶\s+(?P<stage>[a-z0-9][-a-z0-9]*) \(")
SUCCEEDED = re.compile(r"^✓\s+(?P<stage>[a-z0-9][-a-z0-9]*) in ")
FAILED = re.compile(r"^✗\s+(?P<stage>[a-z0-9][-a-z0-9]*) failed\b")
UP_TO_DATE = re.compile(r"^⏭\s+(?P<stage>[a-z0-9][-a-z0-9]*) \([^)]*\): up to date")
# `step 120/300 loss ...` (the training loop's record lines) or `train: 1,200/3,000 steps (40%) ...` (progress lines)
STEP = re.compile(r"\bstep (?P<step>\d+)/\d+\b|: (?P<done>[\d,]+)/[\d,]+ steps\b")
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b:?")
RULES = ("✗", "─", "┏", "┌")  # a line starting with one ends an exception's message (a frame line, a table)
TAIL_LINES = 12
CAUSE_LINES = 50  # of an exception's message: a traceback's last exception is a few lines
LINE_CHARS = 4000  # a line kept for a message is cut there: a status shows it, it is not the log
OPENING = ("running", "up to date")  # outcomes a frame line opens a stage's (new) record with
CLOSING = ("succeeded", "failed")
FRAME_MARKS = ("▶", "✓", "✗", "⏭")  # what each frame line starts with; no other line changes the current stage


@dataclass
class StageLog:
    """One stage's part of the log: its lines (frame lines included) and how the frame ended."""

    outcome: str  # running (no closing line yet) | succeeded | failed | up to date
    lines: list[str]


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


def outcome_of(line: str, owner: str | None, current: str | None, after: str | None) -> str | None:
    """What `line` says of its stage (`owner`, as `stage_of` gave it with `after`, from `current`): that it opens a
    new run of it (`running`, `up to date`), that it closes it (`succeeded`, `failed`), or nothing (None)."""
    if STARTED.match(line):
        return "running"
    if UP_TO_DATE.match(line):
        return "up to date"
    if owner is not None and owner == current and after is None:
        return "succeeded" if SUCCEEDED.match(line) else "failed"
    return None


def stage_logs(log: str) -> dict[str, StageLog]:
    """Each stage the log mentions, with its lines and outcome (a stage run twice: its last run)."""
    out: dict[str, StageLog] = {}
    current: str | None = None
    for line in log.splitlines():
        owner, after = stage_of(line, current)
        said = outcome_of(line, owner, current, after)
        if said in OPENING:
            out[owner] = StageLog(said, [])
        if owner is not None and owner in out:
            out[owner].lines.append(line)
            if said in CLOSING:
                out[owner].outcome = said
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


def failure_cause(lines: list[str]) -> list[str]:
    """The last exception in `lines` (`SomeError: ...` to the next blank or rule line); [] if there is none."""
    cause = ExceptionFold()
    cause.feed(lines)
    return cause.lines


class ExceptionFold:
    """The last exception of the lines fed so far, as `failure_cause` reads it, kept up to date as lines come: a new
    exception line starts it again, and its message runs to the next blank or rule line (at most CAUSE_LINES)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._open = False

    def feed(self, lines: list[str]) -> None:
        start = 0
        for i in range(len(lines) - 1, -1, -1):  # the last exception line, if these lines have one
            line = lines[i]
            if ("Error" in line or "Exception" in line or "Exit" in line) and EXCEPTION_LINE.match(line):
                self.lines, self._open, start = [_clip(line)], True, i + 1
                break
        if not self._open:
            return
        for line in lines[start:]:  # its message goes on, from before these lines or from that one
            if not line.strip() or line.startswith(RULES):
                self._open = False
                return
            if len(self.lines) < CAUSE_LINES:
                self.lines.append(_clip(line))


@dataclass
class StageOutcome:
    """What a status shows of one stage from the log: how its frame ended, the step its progress lines reached (the
    last `step N/T` line's N), and, for a failed stage, why (see `StageFold.failure`)."""

    outcome: str  # running (no closing line yet) | succeeded | failed | up to date
    step: int | None = None
    failure: str = ""


@dataclass
class StageFold:
    """One stage's `StageOutcome`, folded from its lines as they come."""

    outcome: str
    step: int | None = None
    cause: ExceptionFold = field(default_factory=ExceptionFold)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))

    def feed(self, lines: list[str], printed: bool = True) -> None:
        """Fold in consecutive lines of the stage; `printed`: what it printed, not a frame line around it."""
        for line in reversed(lines):  # the last progress line is the one that counts
            if "step" in line and (found := STEP.search(line)):
                self.step = int((found["step"] or found["done"]).replace(",", ""))
                break
        if printed:
            self.cause.feed(lines)
            self.tail.extend(_clip(line) for line in lines[-TAIL_LINES:])

    @property
    def failure(self) -> str:
        """Why the stage failed: its last exception line(s) (a traceback under --debug), else its last lines between
        the frame lines (the one-line error a stage prints)."""
        return "\n".join(self.cause.lines or self.tail)


class LogSummary:
    """What a status needs of a run's log (each stage's `StageOutcome`, the run's failure message), folded from its
    lines as they are fed, keeping a bounded number of them: feeding a log in pieces, each of whole lines, gives what
    feeding it whole does, so a growing log is summarised by feeding what was appended. `stages`: the only stages
    to keep (a job's own; a log may name any), None for all.

    The lines between two frame lines all belong to one stage (or none), so they are folded as one run: its last
    progress line and last exception are searched for from its end, and only its last lines are kept."""

    def __init__(self, stages: Collection[str] | None = None) -> None:
        self.wanted = frozenset(stages) if stages is not None else None
        self.current: str | None = None
        self.stages: dict[str, StageFold] = {}
        self.cause = ExceptionFold()
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)

    def feed(self, text: str) -> LogSummary:
        """Fold in `text`'s lines (each stage's as `stage_logs` assigns them); returns itself."""
        lines = text.splitlines()
        start = 0
        for i, line in enumerate(lines):
            if line.startswith(FRAME_MARKS):
                self._printed(lines[start:i])
                self._frame(line)
                start = i + 1
        self._printed(lines[start:])
        return self

    def _printed(self, lines: list[str]) -> None:
        """Lines between frame lines: the current stage's (if any), as they do not change which stage that is."""
        if not lines:
            return
        stage = self.stages.get(self.current) if self.current is not None else None
        if stage is not None:
            stage.feed(lines)
        self.cause.feed(lines)
        self.tail.extend(_clip(line) for line in lines[-TAIL_LINES:])

    def _frame(self, line: str) -> None:
        owner, after = stage_of(line, self.current)
        said = outcome_of(line, owner, self.current, after)
        if said in OPENING and (self.wanted is None or owner in self.wanted):
            self.stages[owner] = StageFold(said)
        stage = self.stages.get(owner) if owner is not None else None
        if stage is not None:
            stage.feed([line], printed=not (FAILED.match(line) or STARTED.match(line)))
            if said in CLOSING:
                stage.outcome = said
        self.cause.feed([line])
        self.tail.append(_clip(line))
        self.current = after

    def with_text(self, text: str) -> LogSummary:
        """A copy with `text` fed too (a log's unfinished last line), this one unchanged."""
        return copy.deepcopy(self).feed(text)

    def outcomes(self) -> dict[str, StageOutcome]:
        return {name: StageOutcome(s.outcome, s.step, s.failure) for name, s in self.stages.items()}

    def failure_message(self) -> str:
        """What a failed run's log says went wrong: the last exception (`SomeError: ...`, to the next blank or rule
        line) and then the log's last lines (the run's summary table)."""
        return "\n".join([*self.cause.lines, *self.tail])


def _clip(line: str) -> str:
    return line if len(line) <= LINE_CHARS else line[: LINE_CHARS - 1] + "…"
