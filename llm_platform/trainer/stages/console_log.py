"""A stage's console output in a bounded local file, which the stage's `StageReporter` mirrors into the store.

While a stage runs, what it prints (its progress lines and warnings, what libraries log, the output of processes it
starts, a native library's messages) is written to file descriptors 1 and 2. `ConsoleLog` points both at pipes that
one thread reads: every byte goes on to where it went before (the terminal, `llmp run`'s log, the pod's log) and is
appended to `console.log`. Capturing the descriptors rather than `sys.stdout` is what also catches child processes
and native code; the price is that the stage sees a pipe, not a terminal, so it prints plain progress lines at a
steady rate instead of redrawing a bar in place, which is also what a file should hold.

Size: the last `max_bytes` are kept, by rotation. When `console.log` would pass half of it, it is renamed to
`console.1.log` (replacing the one before) and a new one begins. Trimming the head of one file in place would mean
rewriting it, and the mirror re-uploading all of it, at every overflow; a rotation is one rename, and each closed
half is uploaded once. So a serving stage that logs every request for weeks keeps at most `max_bytes` locally and
in the store, while its latest lines are always in `console.log`.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

CONSOLE_FILE = "console.log"
PREVIOUS_FILE = "console.1.log"
MAX_BYTES = 8 << 20  # the last 8 MiB of output: console.log and console.1.log, at most 4 MiB each
STOP_WAIT_S = 2.0  # at the end, how long output still arriving (a child that outlives the stage) is passed on
READ_SIZE = 1 << 16


class ConsoleLog:
    """Tees this process's stdout and stderr into `<folder>/console.log` between `start()` and `stop()`.

    `on_rotate(path)` hears the first time a rotation creates `console.1.log` (to mirror that file too). `note(text)`
    appends to the file only, not to the console: after `stop()`, what the file should say that the console need not
    (a failure's full traceback). Use as a context manager to be sure the descriptors are given back."""

    def __init__(
        self,
        folder: Path,
        max_bytes: int = MAX_BYTES,
        on_rotate: Callable[[Path], None] | None = None,
        fds: tuple[int, ...] = (1, 2),
    ):
        if max_bytes < 2:
            raise ValueError(f"max_bytes must be at least 2, got {max_bytes}")
        self.path, self.previous = folder / CONSOLE_FILE, folder / PREVIOUS_FILE
        self.max_bytes, self.on_rotate, self.fds = max_bytes, on_rotate, fds
        self._lock = threading.Lock()  # the pump thread and `note` both append
        self._file = None
        self._size = 0
        self._rotated = False
        self._saved: dict[int, int] = {}  # captured descriptor -> a duplicate of where it pointed before
        self._reads: dict[int, int] = {}  # a pipe's read end -> the saved descriptor its bytes go on to
        self._pump: threading.Thread | None = None
        self._stopping = threading.Event()
        self._deadline = 0.0

    def __enter__(self) -> ConsoleLog:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> ConsoleLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = _open(self.path)
        self._size = self._file.tell()
        _flush_python_streams()
        for fd in self.fds:
            read, write = os.pipe()
            self._saved[fd] = os.dup(fd)
            os.dup2(write, fd)
            os.close(write)
            self._reads[read] = self._saved[fd]
        self._pump = threading.Thread(target=self._run, name="llmp-console-log", daemon=True)
        self._pump.start()
        return self

    def stop(self) -> None:
        """Give the descriptors back and wait until what was written before is in the file (a child process that
        still holds the pipe is followed for at most STOP_WAIT_S more). Idempotent."""
        if self._pump is None:
            return
        _flush_python_streams()
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)  # closes this process's write end of the pipe
        self._deadline = time.monotonic() + STOP_WAIT_S
        self._stopping.set()
        self._pump.join()
        self._pump = None
        for fd in [*self._reads, *self._saved.values()]:
            os.close(fd)
        self._reads.clear()
        self._saved.clear()

    def close(self) -> None:
        self.stop()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def note(self, text: str) -> None:
        """Append `text` (and a newline, if it lacks one) to the file alone."""
        self._append(text.encode() if text.endswith("\n") else f"{text}\n".encode())

    def _run(self) -> None:
        """Pass each pipe's bytes on and into the file, until every write end is closed, or the stage has ended and
        nothing more comes (or STOP_WAIT_S has passed since)."""
        open_ends = set(self._reads)
        while open_ends:
            ready, _, _ = select.select(list(open_ends), [], [], 0.1)
            stopping = self._stopping.is_set()
            if stopping and (not ready or time.monotonic() > self._deadline):
                return
            for read in ready:
                data = os.read(read, READ_SIZE)
                if not data:
                    open_ends.discard(read)
                    continue
                _write_all(self._reads[read], data)
                self._append(data)

    def _append(self, data: bytes) -> None:
        """Append, rotating each time console.log reaches half of `max_bytes` (a line may be split across the two)."""
        half, rotated = self.max_bytes // 2, False
        with self._lock:
            if self._file is None:
                return
            while data:
                if self._size >= half:
                    self._file.close()
                    os.replace(self.path, self.previous)
                    self._file = _open(self.path)
                    self._size = 0
                    rotated, self._rotated = rotated or not self._rotated, True
                piece, data = data[: half - self._size], data[half - self._size :]
                self._file.write(piece)
                self._size += len(piece)
        if rotated and self.on_rotate is not None:
            self.on_rotate(self.previous)


def _open(path: Path):
    """The file to append to, open until `close()` (so not a `with`); unbuffered: the mirror copies what was written,
    not what a buffer still holds."""
    return open(path, "ab", buffering=0)  # noqa: SIM115


def _write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd`; a console that went away (a closed pipe) just stops getting it."""
    view = memoryview(data)
    with contextlib.suppress(OSError):
        while view:
            view = view[os.write(fd, view) :]


def _flush_python_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or replaced stream has nothing of ours to flush
            stream.flush()
