"""A stage's console output in a bounded local file, which the stage's `StageReporter` mirrors into the store.

While a stage runs, what it prints (its progress lines and warnings, what libraries log, the output of processes it
starts, a native library's messages) is written to file descriptors 1 and 2. `ConsoleLog` points both at pipes read
by a small tee process (this file, run as a script on the standard library alone): every byte goes on to where it
went before (the terminal, `llmp run`'s log, the pod's log) and is appended to `console.log`. Capturing the
descriptors rather than `sys.stdout` is what also catches child processes and native code. A process rather than a
thread reads the pipes so that the last words of a stage that dies abruptly (a native library's message before an
abort, a fault handler's dump) still reach the console and the file: a thread would die with the stage, and what
sat in the pipe with it. The price of the pipes: the stage sees a pipe, not a terminal, so it prints plain progress
lines at a steady rate instead of redrawing a bar in place, which is also what a file should hold.

Size: the last `max_bytes` are kept, by rotation. When `console.log` reaches half of it, it is renamed to
`console.1.log` (replacing the one before) and a new one begins. Trimming the head of one file in place would mean
rewriting it, and the mirror re-uploading all of it, at every overflow; a rotation is one rename, and each closed
half is uploaded once. So a serving stage that logs every request for weeks keeps at most `max_bytes` locally and
in the store, while its latest lines are always in `console.log`.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

CONSOLE_FILE = "console.log"
PREVIOUS_FILE = "console.1.log"
MAX_BYTES = 8 << 20  # the last 8 MiB of output: console.log and console.1.log, at most 4 MiB each
STOP_WAIT_S = 5.0  # at the end, how long to wait for output still arriving (a child that outlives the stage)
READ_SIZE = 1 << 16


class ConsoleLog:
    """Tees this process's stdout and stderr into `<folder>/console.log` between `start()` and `stop()`.

    `note(text)` appends to the file only, not to the console: after `stop()`, what the file should say that the
    console need not (a failure's full traceback). Use as a context manager to be sure the descriptors are given
    back."""

    def __init__(self, folder: Path, max_bytes: int = MAX_BYTES, fds: tuple[int, ...] = (1, 2)):
        if max_bytes < 2:
            raise ValueError(f"max_bytes must be at least 2, got {max_bytes}")
        self.path, self.previous = folder / CONSOLE_FILE, folder / PREVIOUS_FILE
        self.max_bytes, self.fds = max_bytes, fds
        self._saved: dict[int, int] = {}  # captured descriptor -> a duplicate of where it pointed before
        self._tee: subprocess.Popen | None = None

    def __enter__(self) -> ConsoleLog:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> ConsoleLog:
        """Start capturing (once); an OSError (say, a descriptor this process was started without) leaves
        everything as it was."""
        if self._tee is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        pipes: dict[int, tuple[int, int]] = {}
        try:
            for fd in self.fds:
                self._saved[fd] = os.dup(fd)
                pipes[fd] = os.pipe()
            # the tee's own descriptors 1 and 2 are where ours point now; it gets only the read ends besides
            reads = [f"{read}:{fd}" for fd, (read, _) in pipes.items()]
            self._tee = subprocess.Popen(
                [sys.executable, "-I", "-S", __file__, str(self.path), str(self.max_bytes), *reads],
                pass_fds=[read for read, _ in pipes.values()],
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            for end in [*self._saved.values(), *(end for pair in pipes.values() for end in pair)]:
                os.close(end)
            self._saved.clear()
            raise
        _flush_python_streams()
        for fd, (read, write) in pipes.items():
            os.close(read)
            os.dup2(write, fd)
            os.close(write)
        return self

    def stop(self) -> None:
        """Give the descriptors back and wait until what was written before is in the file (a child process that
        still holds a pipe is waited for at most STOP_WAIT_S; the tee then goes on without us). Idempotent."""
        if self._tee is None:
            return
        _flush_python_streams()
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)  # closes this process's write end of the pipe
            os.close(saved)
        self._saved.clear()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._tee.wait(STOP_WAIT_S)
        self._tee = None

    def note(self, text: str) -> None:
        """Append `text` (and a newline, if it lacks one) to the file alone."""
        data = text.encode(errors="replace") if text.endswith("\n") else f"{text}\n".encode(errors="replace")
        with RotatingFile(self.path, self.max_bytes) as file:
            file.append(data)


class RotatingFile:
    """Appends to `path`, renaming it to `console.1.log` beside it whenever it reaches half of `max_bytes` (a line
    may be split across the two). Unbuffered: the mirror copies what was written, not what a buffer holds."""

    def __init__(self, path: Path, max_bytes: int):
        self.path, self.previous, self.half = path, path.with_name(PREVIOUS_FILE), max_bytes // 2
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115  # open until close(), across rotations
        self._size = self._file.tell()

    def __enter__(self) -> RotatingFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def append(self, data: bytes) -> None:
        while data:
            if self._size >= self.half:
                self._file.close()
                os.replace(self.path, self.previous)
                self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115
                self._size = 0
            piece, data = data[: self.half - self._size], data[self.half - self._size :]
            self._file.write(piece)
            self._size += len(piece)


def tee(reads: dict[int, int], file: RotatingFile | None) -> None:
    """Pass each pipe's bytes on to its descriptor (read end -> where to) and into the file, until every write end
    is closed. A console that went away (a closed pipe) stops getting them, and so does a file that cannot be
    written (a full disk): the stage's own output must never fail because its copy does."""
    while reads:
        ready, _, _ = select.select(list(reads), [], [])
        for read in ready:
            data = os.read(read, READ_SIZE)
            if not data:
                del reads[read]
                continue
            _write_all(reads[read], data)
            if file is not None:
                try:
                    file.append(data)
                except (OSError, ValueError):  # ValueError: a rotation that failed left it closed
                    file = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    with contextlib.suppress(OSError):
        while view:
            view = view[os.write(fd, view) :]


def _flush_python_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or replaced stream has nothing of ours to flush
            stream.flush()


def main(argv: list[str]) -> None:
    """`console_log.py FILE MAX_BYTES READ:FD...`: the tee process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the stage, which then writes its last words here
    path, max_bytes, pairs = Path(argv[0]), int(argv[1]), argv[2:]
    reads = {int(read): int(fd) for read, fd in (pair.split(":") for pair in pairs)}
    try:
        file = RotatingFile(path, max_bytes)
    except OSError:
        file = None
    try:
        tee(reads, file)
    finally:
        if file is not None:
            file.close()


if __name__ == "__main__":
    main(sys.argv[1:])
