"""The processes a local job started, known by identity rather than by pid alone (Linux `/proc`).

A pid is reused once its process is gone, so the API records (pid, start time) of each job's `llmp run`, which is the
leader of its own process group. After a restart the API trusts a pid only if /proc still shows a live process with
that start time; only then does it signal the group, so a DELETE can never kill an unrelated process that happens to
hold a recycled pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessId:
    pid: int
    start_ticks: int  # field 22 of /proc/<pid>/stat: start time in clock ticks after boot


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses); None if gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields[0] is field 3 (state)


def identify(pid: int) -> ProcessId | None:
    fields = _stat(pid)
    return ProcessId(pid, int(fields[19])) if fields else None


def is_alive(process: ProcessId) -> bool:
    """The same process (pid and start time) still runs; a zombie counts as gone."""
    fields = _stat(process.pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == process.start_ticks


def group_members(pgid: int) -> list[int]:
    """Live pids in the process group `pgid`."""
    members = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def running_stages(process: ProcessId) -> set[str]:
    """Stages being run by the job: the `--stage NAME` of each `llmp stage run` in the job's process group."""
    if not is_alive(process):
        return set()
    stages = set()
    for pid in group_members(process.pid):
        try:
            argv = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--stage" in argv and argv.index(b"--stage") + 1 < len(argv):
            stages.add(argv[argv.index(b"--stage") + 1].decode(errors="replace"))
    return stages


def stop_group(process: ProcessId, grace_s: float = 5.0) -> None:
    """SIGTERM the job's process group, SIGKILL whatever is left after `grace_s`; nothing if it is not ours any more."""
    if not is_alive(process):
        return
    _signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and group_members(process.pid):
        _reap(process.pid)
        time.sleep(0.05)
    if group_members(process.pid):
        _signal_group(process.pid, signal.SIGKILL)
        while group_members(process.pid) and time.monotonic() < deadline + grace_s:
            _reap(process.pid)
            time.sleep(0.05)
    _reap(process.pid)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _reap(pid: int) -> None:
    """Collect the exit status if the leader is our own child (else it stays a zombie and keeps its pid)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
