"""The code sandbox: HumanEval's canonical solutions pass, wrong ones fail, and planted malicious programs are
contained (no file outside the temp dir changes, no process survives, the host stays responsive, no connection)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from llm_platform.trainer.eval.benchmark_files import HUMANEVAL_FILE, benchmark_file, read_humaneval
from llm_platform.trainer.eval.sandbox import Limits, humaneval_program, isolation, run_program, run_programs
from tests.conftest import shared_path

QUICK = Limits(timeout_s=3, cpu_s=2, memory_bytes=512 << 20, file_bytes=1 << 20, output_chars=2000)
MODES = ["namespaces", "rlimits"] if isolation() == "namespaces" else ["rlimits"]


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    return read_humaneval(benchmark_file(shared_path("data"), HUMANEVAL_FILE))


def test_canonical_solutions_pass(problems):
    """Every eighth of the 164 problems (all of them: bench/humaneval_canonical.py, 164/164 in ~8 s on 2 cores)."""
    sample = problems[::8]
    outcomes = run_programs([humaneval_program(p, p["canonical_solution"]) for p in sample], workers=8)
    pairs = zip(sample, outcomes, strict=True)
    failures = [(p["task_id"], o.status, o.stderr[-300:]) for p, o in pairs if not o.passed]
    assert len(problems) == 164 and len(sample) == 21 and failures == []


def test_wrong_solutions_fail(problems):
    sample = problems[::16]  # 11 problems: a stub, and each problem given its neighbour's solution
    stubs = [humaneval_program(p, "    return None\n") for p in sample]
    swapped = [humaneval_program(p, q["canonical_solution"]) for p, q in zip(sample, sample[1:], strict=False)]
    assert not any(outcome.passed for outcome in run_programs(stubs + swapped, QUICK, workers=8))


def sandbox_processes() -> list[int]:
    """Processes running a sandboxed program (their command line ends with program.py)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().split(b"\0")[-2:-1] == [b"program.py"]:
                found.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return found


@pytest.fixture
def canary(tmp_path):
    """A file and folder the sandbox must not change, beside a listening socket it must not reach."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "canary.txt").write_text("untouched")
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("mode", MODES)
def test_deleting_and_writing_outside_the_temp_dir_changes_nothing(canary, mode):
    before = snapshot(canary)
    attacks = [
        f"import os; os.remove({str(canary / 'canary.txt')!r})",
        f"import shutil; shutil.rmtree({str(canary)!r})",
        f"open({str(canary / 'canary.txt')!r}, 'w').write('owned')",
        f"open({str(canary / 'new.txt')!r}, 'w').write('planted')",
        f"import os; os.rename({str(canary / 'canary.txt')!r}, 'stolen.txt')",
        "import os; os.remove(os.path.expanduser('~/../../logs/stdout'))",
    ]
    outcomes = [run_program(source, QUICK, mode=mode) for source in attacks]
    assert [o.status for o in outcomes] == ["failed"] * len(attacks)
    assert all("Error" in o.stderr for o in outcomes)
    assert snapshot(canary) == before


@pytest.mark.parametrize("mode", MODES)
def test_writing_inside_the_temp_dir_works(mode):
    source = "import os\nopen('a.txt', 'w').write('x')\nos.remove('a.txt')\nprint(os.environ['HOME'] == os.getcwd())"
    outcome = run_program(source, QUICK, mode=mode)
    assert outcome.passed and outcome.stdout == "True\n"


@pytest.mark.parametrize("mode", MODES)
def test_an_infinite_loop_is_killed_at_the_timeout(mode):
    limits = Limits(timeout_s=1.5, cpu_s=1)
    started = time.monotonic()
    outcome = run_program("while True:\n    pass\n", limits, mode=mode)
    # generous slack for a loaded CI machine: what matters is that it ends, not how promptly
    assert outcome.status in ("timeout", "killed") and time.monotonic() - started < limits.timeout_s + 10
    assert sandbox_processes() == []


@pytest.mark.parametrize("mode", MODES)
def test_huge_output_is_cut_and_stopped(mode):
    outcome = run_program("while True:\n    print('x' * 10000)\n", QUICK, mode=mode)
    assert not outcome.passed and len(outcome.stdout) == QUICK.output_chars


def test_memory_is_capped():
    outcome = run_program("blob = bytearray(2 << 30)\n", QUICK)
    assert outcome.status == "failed" and "MemoryError" in outcome.stderr


@pytest.mark.parametrize("mode", MODES)
def test_no_connection_reaches_a_loopback_server(mode):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.5)
        port = server.getsockname()[1]
        source = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        outcome = run_program(source, QUICK, mode=mode)
        with pytest.raises(TimeoutError):
            server.accept()
    assert outcome.status == "failed" and ("unreachable" in outcome.stderr or "sandbox" in outcome.stderr)


@pytest.mark.parametrize("mode", MODES)
def test_a_fork_bomb_is_contained_and_the_host_stays_responsive(mode):
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result = {}
    limits = Limits(timeout_s=2, cpu_s=2)
    thread = threading.Thread(target=lambda: result.setdefault("outcome", run_program(bomb, limits, mode=mode)))
    thread.start()
    time.sleep(0.7)
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=20)
    responsive = time.monotonic() - started
    thread.join()
    assert not result["outcome"].passed
    assert responsive < 10  # a fresh interpreter starts while the bomb runs (~0.1 s when idle)
    assert sandbox_processes() == []


def test_the_process_limit_bites_in_namespaces():
    if isolation() != "namespaces":
        pytest.skip("RLIMIT_NPROC per sandbox needs the namespaces mode (root with unshare and setpriv)")
    source = (
        "import os, time\nn = 0\nfor _ in range(100):\n    try:\n        pid = os.fork()\n    except OSError:\n"
        "        break\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n    n += 1\nprint(n)\n"
    )
    outcome = run_program(source, QUICK)
    assert outcome.passed and int(outcome.stdout) < QUICK.processes
    assert sandbox_processes() == []


def test_a_detached_child_does_not_survive():
    source = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nprint('parent exits')\n"
    assert run_program(source, QUICK).passed
    time.sleep(0.2)
    assert sandbox_processes() == []


def test_bad_limits_and_modes_are_refused():
    with pytest.raises(ValueError, match="sandbox limit timeout_s must be positive"):
        Limits(timeout_s=0)
    with pytest.raises(ValueError, match="sandbox mode 'docker' is not available"):
        run_program("pass", mode="docker")


def test_the_program_runs_isolated_from_our_environment(monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    outcome = run_program("import os, sys\nprint(os.environ.get('SECRET_TOKEN'), sys.flags.isolated)\n", QUICK)
    assert outcome.stdout == "None 1\n" and os.environ["SECRET_TOKEN"] == "hunter2"


def test_the_temp_dir_is_capped_and_leaves_nothing_behind():
    if isolation() != "namespaces":
        pytest.skip("the size-capped temp dir needs the namespaces mode (root with unshare and setpriv)")
    before = {p.name for p in Path(tempfile.gettempdir()).iterdir()}
    source = "for i in range(100):\n    open(f'f{i}', 'wb').write(b'x' * (1 << 20))\n"
    outcome = run_program(source, Limits(timeout_s=5, disk_bytes=8 << 20))
    assert outcome.status == "failed" and "No space left on device" in outcome.stderr
    assert {p.name for p in Path(tempfile.gettempdir()).iterdir()} <= before
