"""What the local jobs API knows about each job, kept in SQLite under its root so that a restart loses nothing.

One row per (namespace, name): the spec as submitted, where the job is in its life (queued, running, ended), the
identity of the `llmp run` process that runs it (pid and start time, see `processes`) and its exit code. A DELETE
removes the row, so the name is free again at once. SQLite serialises writers and survives `kill -9` of the server
mid-write (a transaction is all or nothing).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .processes import ProcessId

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    spec        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('queued', 'running', 'ended')),
    seq         INTEGER NOT NULL,
    pid         INTEGER,
    start_ticks INTEGER,
    exit_code   INTEGER,
    submitted   REAL NOT NULL,
    started     REAL,
    finished    REAL,
    PRIMARY KEY (namespace, name)
)
"""


@dataclass(frozen=True)
class JobRow:
    namespace: str
    name: str
    spec: str  # the job's YAML, as written to job.yaml
    state: str  # queued | running | ended
    seq: int  # submission order: the queue is first come, first served
    process: ProcessId | None
    exit_code: int | None  # None while not ended, or when the process ended while the server was down
    submitted: float
    started: float | None
    finished: float | None


class JobTable:
    """Thread-safe access to the jobs table (one connection, one lock: the API's load is a few requests a second)."""

    def __init__(self, path: Path):
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def insert(self, namespace: str, name: str, spec: str) -> bool:
        """Queue a new job; False if the name is taken in that namespace."""
        with self._lock:
            seq = time.time_ns()  # also tells a re-submitted job from the deleted one of the same name
            try:
                self._db.execute(
                    "INSERT INTO jobs (namespace, name, spec, state, seq, submitted) VALUES (?, ?, ?, 'queued', ?, ?)",
                    (namespace, name, spec, seq, time.time()),
                )
            except sqlite3.IntegrityError:
                return False
            return True

    def get(self, namespace: str, name: str) -> JobRow | None:
        rows = self._select("WHERE namespace = ? AND name = ?", (namespace, name))
        return rows[0] if rows else None

    def in_namespace(self, namespace: str) -> list[JobRow]:
        return self._select("WHERE namespace = ? ORDER BY name", (namespace,))

    def in_state(self, state: str) -> list[JobRow]:
        return self._select("WHERE state = ? ORDER BY seq", (state,))

    def count(self, state: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (state,)).fetchone()[0]

    def started(self, row: JobRow, process: ProcessId) -> None:
        self._update(row, "state = 'running', pid = ?, start_ticks = ?, started = ?", (*_ids(process), time.time()))

    def ended(self, row: JobRow, exit_code: int | None) -> None:
        self._update(row, "state = 'ended', exit_code = ?, finished = ?", (exit_code, time.time()))

    def delete(self, namespace: str, name: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE namespace = ? AND name = ?", (namespace, name))

    def _update(self, row: JobRow, assignments: str, values: tuple) -> None:
        """Update the row only if it is still the same submission (a DELETE and re-submit in between leaves it)."""
        with self._lock:
            self._db.execute(
                f"UPDATE jobs SET {assignments} WHERE namespace = ? AND name = ? AND seq = ?",
                (*values, row.namespace, row.name, row.seq),
            )

    def _select(self, where: str, args: tuple) -> list[JobRow]:
        columns = "namespace, name, spec, state, seq, pid, start_ticks, exit_code, submitted, started, finished"
        with self._lock:
            rows = self._db.execute(f"SELECT {columns} FROM jobs {where}", args).fetchall()
        return [
            JobRow(ns, name, spec, state, seq, ProcessId(pid, ticks) if pid else None, code, sub, start, fin)
            for ns, name, spec, state, seq, pid, ticks, code, sub, start, fin in rows
        ]


def _ids(process: ProcessId) -> tuple[int, int]:
    return process.pid, process.start_ticks
