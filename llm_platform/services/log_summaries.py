"""What each local job's `run.log` says for its status, kept between status reads so that a read costs what the run
appended since the last one: nothing but a `stat` for a log that did not change (every ended job in a listing), a
few KB for a running one, instead of parsing up to `LOG_READ_LIMIT` (16 MiB) of it on every GET.

A log is only ever appended to by its run. One that is no longer the same file (another inode), shorter than what was
read, or rewritten in place (same size, another mtime) is read again from the start, and so is one that grew by
more than `LOG_READ_LIMIT` since (its last `LOG_READ_LIMIT` bytes, as a first read takes). The logs route reads the
file itself (`local_logs`), not this.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Collection, Hashable
from dataclasses import dataclass
from pathlib import Path

from .local_logs import LOG_READ_LIMIT
from .run_log import LogSummary, StageOutcome

MAX_JOBS = 256  # summaries kept, of the jobs read last; one dropped is read whole at its next status read


@dataclass(frozen=True)
class LogStatus:
    """A log's summary as of one read: each stage's outcome and the run's failure message."""

    stages: dict[str, StageOutcome]
    failure_message: str


@dataclass
class _Read:
    """How far one log was read, and what its whole lines said."""

    file: tuple[int, int]  # (st_dev, st_ino)
    offset: int  # bytes read, up to the end of the last whole line
    size: int  # the file's size and mtime when last looked at
    mtime_ns: int
    summary: LogSummary  # of the whole lines up to `offset`
    status: LogStatus  # of the file as it was: `summary` and its unfinished last line


class LogSummaries:
    """The `LogStatus` of each job's log, by a key of the caller's (a job's namespace, name and submission), read
    only for what the run appended since the last read. Safe to call from many threads: a log is read outside the
    lock, so one job's first (long) read does not hold up another's."""

    def __init__(self, max_jobs: int = MAX_JOBS):
        self.max_jobs = max_jobs
        self._reads: OrderedDict[Hashable, _Read] = OrderedDict()
        self._lock = threading.Lock()

    def status(self, key: Hashable, path: Path, stages: Collection[str]) -> LogStatus | None:
        """The log's status now, None if there is no log; `stages`: the job's, the only ones kept."""
        with self._lock:
            previous = self._reads.pop(key, None)
        try:
            read = _read(path, previous, stages)
        except FileNotFoundError:
            return None
        with self._lock:
            self._reads[key] = read
            while len(self._reads) > self.max_jobs:
                self._reads.popitem(last=False)
        return read.status

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._reads.pop(key, None)


def _read(path: Path, previous: _Read | None, stages: Collection[str]) -> _Read:
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        file = (st.st_dev, st.st_ino)
        same = previous is not None and previous.file == file
        if same and (previous.size, previous.mtime_ns) == (st.st_size, st.st_mtime_ns):
            return previous  # unchanged: not read
        appended = same and previous.size < st.st_size and st.st_size - previous.offset <= LOG_READ_LIMIT
        start = previous.offset if appended else max(0, st.st_size - LOG_READ_LIMIT)
        summary = previous.summary if appended else LogSummary(stages)
        f.seek(start)
        data = f.read(st.st_size - start)  # what was there at the fstat; more may come, for the next read
    whole, newline, unfinished = data.rpartition(b"\n")
    if not newline:
        whole, unfinished = b"", data
    summary.feed((whole + newline).decode(errors="replace"))
    offset = start + len(whole) + len(newline)
    status = summary.with_text(unfinished.decode(errors="replace")) if unfinished else summary
    snapshot = LogStatus(status.outcomes(), status.failure_message())
    return _Read(file, offset, start + len(data), st.st_mtime_ns, summary, snapshot)
