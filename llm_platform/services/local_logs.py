"""Reading a local job's `llmp run` log for the logs route: what is there now, then (following) what the run adds,
until it ends. The file is read from where the last read stopped, so following a long run costs what it writes."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio

from .backend import LogQuery
from .run_log import select_lines, stage_logs, stage_of

LOG_READ_LIMIT = 16 << 20  # a request (or a status) reads at most the last 16 MiB of a run's log


async def log_lines(path: Path, query: LogQuery, ended: Callable[[], bool], poll_s: float) -> AsyncIterator[str]:
    """The log's lines (each with its newline): those of `query.stage` only, the last `query.tail` only; following,
    the lines written after, until `ended()` (checked before each read, so nothing written before the end is lost)
    or the stage's closing line."""
    data, offset = await anyio.to_thread.run_sync(read_from, path, 0)
    text = data.decode(errors="replace")
    complete, partial = _split(text)
    # not following, the whole log's unfinished last line is its last line (`tail` counts it); a stage's is left out
    shown = text if not query.follow and query.stage is None else complete
    for line in select_lines(shown, query.stage, query.tail):
        yield line + "\n"
    if not query.follow:
        return
    if query.stage is not None:
        found = stage_logs(complete).get(query.stage)
        if found is not None and found.outcome != "running":
            return  # that stage is over: nothing more will come
    current: str | None = None
    for line in complete.splitlines():
        _, current = stage_of(line, current)
    pending = partial.encode()
    while True:
        over = await anyio.to_thread.run_sync(ended)
        data, offset = await anyio.to_thread.run_sync(read_from, path, offset)
        *lines, pending = (pending + data).split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace")
            owner, current = stage_of(line, current)
            if query.stage is None or owner == query.stage:
                yield line + "\n"
            if query.stage is not None and owner == query.stage and current != query.stage:
                return  # the stage's closing line
        if over:
            if pending and query.stage is None:
                yield pending.decode(errors="replace") + "\n"
            return
        await anyio.sleep(poll_s)


def read_from(path: Path, offset: int) -> tuple[bytes, int]:
    """The bytes of `path` from `offset` on (from 0: its last LOG_READ_LIMIT bytes), and the offset after them."""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            start = max(0, end - LOG_READ_LIMIT) if offset == 0 else min(offset, end)
            f.seek(start)
            data = f.read(end - start)
            return data, start + len(data)
    except FileNotFoundError:
        return b"", offset


def _split(text: str) -> tuple[str, str]:
    """(the complete lines, the unfinished last line)."""
    complete, newline, partial = text.rpartition("\n")
    return (complete + newline, partial) if newline else ("", partial)
