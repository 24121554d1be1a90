"""A stage's console output reaches the store while it runs (`<stage>/live/console.log`), local and on S3, and holds
a failing stage's error; the file keeps only the last `max_bytes`, by rotation."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from llm_platform.api.status import progress_key
from llm_platform.cli import app
from llm_platform.cli_status import console_end
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.stages.console_log import ConsoleLog
from llm_platform.trainer.stages.progress import StageReporter, live_key, read_stage_status
from tests.processes import llmp

JOB = """\
apiVersion: llmplatform.dev/v1alpha1
kind: LLMJob
metadata: {{name: console}}
spec:
  stages:
  - name: data
    kind: data
    data:
      sources: [{{type: stdlib, include: "json/*.py"}}, {{type: jsonl, path: "{feed}"}}]
      clean: {{min_chars: 1}}
"""
CONSOLE = f"{live_key('data')}/console.log"
DOCS = "".join(f'{{"text": "document number {i}"}}\n' for i in range(300))  # more than one batch of 256


def wait_for(condition, what: str, timeout: float = 20.0, then=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if then is not None:
            then()
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path) -> str:
    if request.param == "local":
        return f"file://{tmp_path / 'store'}"
    return f"s3://{request.getfixturevalue('s3_bucket')}/job"


def test_a_running_stage_mirrors_its_console_to_the_store_and_ends_it_with_its_failure(storage, tmp_path):
    """`llmp stage run` (what a pod runs) on a data stage that reads from a FIFO: it runs until the test closes the
    FIFO, so the console file is seen in the store while the stage is still running; the bad line then fails it."""
    feed = tmp_path / "feed.jsonl"
    os.mkfifo(feed)
    job = tmp_path / "job.yaml"
    job.write_text(JOB.format(feed=feed))
    env = {**os.environ, "LLMP_PROGRESS_EVERY_S": "0.2"}  # progress lines and store heartbeats five times a second
    stage = subprocess.Popen(
        [sys.executable, "-m", "llm_platform.cli", "stage", "run", "--job", str(job), "--stage", "data"]
        + ["--storage", storage],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        with open(feed, "w") as writer:  # blocks until the stage opens the FIFO to read it
            store = ArtifactStore.open(storage)

            def a_progress_line_in_the_store() -> bool:
                return b"data: " in (store.backend.get_bytes(CONSOLE) or b"")

            def feed_more() -> None:
                writer.write(DOCS)
                writer.flush()

            wait_for(a_progress_line_in_the_store, "a progress line in the store's console.log", then=feed_more)
            running = store.read_json(progress_key("data"))
            assert running["phase"] == "Running" and stage.poll() is None  # seen while the stage still runs
            assert running["artifacts"]["console.log"].endswith(CONSOLE)
            writer.write("not json\n")
        out, err = stage.communicate(timeout=60)
    finally:
        stage.kill()
        stage.wait()
    assert stage.returncode == 2, err.decode()
    error = f"{feed}:"
    assert error in err.decode() and "Traceback" not in err.decode()  # the console: one line, no traceback
    console = store.backend.get_bytes(CONSOLE).decode()
    assert "data: " in console  # the progress lines
    last = console.rstrip().splitlines()[-1]  # then, in the file only, the traceback, ending with the error
    assert last.startswith("ValueError: ") and error in last and "not valid JSON" in last and "Traceback" in console
    failed = store.read_json(progress_key("data"))
    assert failed["phase"] == "Failed" and "not valid JSON" in failed["message"]
    shown = CliRunner().invoke(app, ["status", storage])  # `llmp status` on the store, local or S3
    assert shown.exit_code == 0, shown.output
    end = shown.output.split("data failed; the end of its console", 1)[1].splitlines()
    assert end[-1] == last and "Traceback" not in shown.output  # the error, without the frames
    assert any(line.startswith("data: ") for line in end)  # and what the stage printed last


def test_a_stage_that_succeeds_leaves_all_it_printed(tmp_path):
    job = tmp_path / "job.yaml"
    (tmp_path / "docs.jsonl").write_text(DOCS)
    job.write_text(JOB.format(feed=tmp_path / "docs.jsonl"))
    uri = f"file://{tmp_path / 'store'}"
    done = llmp("stage", "run", "--job", str(job), "--stage", "data", "--storage", uri, timeout=60)
    assert done.returncode == 0, done.stderr
    console = ArtifactStore.open(uri).backend.get_bytes(CONSOLE).decode()
    summary = next(line for line in done.stderr.splitlines() if " documents in, " in line)
    assert console.splitlines()[-1] == summary  # the last line printed is the file's last line too
    assert sorted(console.splitlines()) == sorted((done.stdout + done.stderr).splitlines())  # all of it, once


def test_the_file_keeps_the_last_max_bytes_by_rotation(tmp_path):
    written = "".join(f"line {i:02d}\n" for i in range(30))  # 240 bytes
    with ConsoleLog(tmp_path, max_bytes=200, fds=(1,)) as log:
        for line in written.splitlines(keepends=True):
            os.write(1, line.encode())  # through the real descriptor, read by the tee in chunks of any size
        log.stop()
        log.note("the end")
    current, previous = log.path.read_text(), log.previous.read_text()
    assert len(previous) == 100 and 0 < len(current) <= 100  # never more than max_bytes in all
    assert (written + "the end\n").endswith(previous + current)  # the last bytes, in order


def test_the_descriptors_are_given_back(tmp_path):
    before = os.fstat(1)
    with ConsoleLog(tmp_path, fds=(1,)):
        assert os.fstat(1).st_ino != before.st_ino  # a pipe meanwhile
    assert (os.fstat(1).st_dev, os.fstat(1).st_ino) == (before.st_dev, before.st_ino)
    with pytest.raises(ValueError, match="max_bytes"):
        ConsoleLog(Path(tmp_path), max_bytes=1)


def test_a_descriptor_that_cannot_be_captured_leaves_everything_as_it_was(tmp_path):
    before, open_before = os.fstat(1), sorted(os.listdir("/proc/self/fd"))
    closed = 1000  # far above what pipes get next
    assert str(closed) not in open_before
    with pytest.raises(OSError):
        ConsoleLog(tmp_path, fds=(1, closed)).start()
    assert (os.fstat(1).st_dev, os.fstat(1).st_ino) == (before.st_dev, before.st_ino)
    assert sorted(os.listdir("/proc/self/fd")) == open_before  # nothing left open


def test_the_last_words_of_a_process_that_dies_abruptly_are_kept(tmp_path):
    """What a native library prints just before it aborts (here: os.abort after a raw write) is neither lost from
    the console nor from the file: the tee is a process of its own."""
    script = (
        "import os; from pathlib import Path; from llm_platform.trainer.stages.console_log import ConsoleLog; "
        f"ConsoleLog(Path({str(tmp_path)!r})).start(); os.write(2, b'fatal: native failure\\n'); os.abort()"
    )
    died = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)
    assert died.returncode == -6 and died.stderr == b"fatal: native failure\n"
    wait_for(lambda: (tmp_path / "console.log").read_bytes() == died.stderr, "the tee to write the file", 5)


def test_the_older_half_reaches_the_store_once_a_rotation_makes_it_and_is_not_listed(tmp_path):
    store = ArtifactStore.open(str(tmp_path / "store"))
    reporter = StageReporter(store, "data", every_s=3600, console=Console(file=io.StringIO()))
    log = ConsoleLog(tmp_path / "console", max_bytes=16)  # halves of 8 bytes
    reporter.watch(log.path)
    reporter.watch(log.previous, listed=False)
    reporter.start()
    log.path.parent.mkdir()
    log.note("first")  # 6 bytes: console.log only
    reporter.flush()
    assert store.backend.get_bytes(f"{live_key('data')}/console.1.log") is None
    log.note("second")  # 13 bytes: the first 8 rotated into console.1.log
    reporter.finish("Succeeded")
    live = {name: store.backend.get_bytes(f"{live_key('data')}/{name}") for name in ("console.1.log", "console.log")}
    assert (live["console.1.log"], live["console.log"]) == (b"first\nse", b"cond\n")
    assert list(read_stage_status(store, "data").artifacts) == ["console.log"]


def test_a_file_that_cannot_be_written_never_stops_the_output(tmp_path):
    (tmp_path / "console.log").mkdir()  # where the file should be
    script = (
        "from pathlib import Path; from llm_platform.trainer.stages.console_log import ConsoleLog; "
        f"log = ConsoleLog(Path({str(tmp_path)!r})).start(); print('still here', flush=True); log.stop()"
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert (ran.returncode, ran.stdout) == (0, "still here\n"), ran.stderr


def test_the_end_of_a_console_is_its_last_lines_and_the_error_without_the_frames():
    printed = [f"step {i}/9" for i in range(9)]
    frames = ["Traceback (most recent call last):", '  File "x.py", line 1, in f', "    f()"]
    text = "\n".join([*printed, "", *frames, "RuntimeError: CUDA out of memory", "  (tried 2 GiB)", ""])
    assert console_end(text, lines=3) == [
        "step 6/9",
        "step 7/9",
        "step 8/9",
        "RuntimeError: CUDA out of memory",
        "  (tried 2 GiB)",
    ]
    died = "\n".join([*printed, "terminate called after throwing an instance of 'c10::Error'", "x" * 400])
    assert console_end(died, lines=2) == [
        "terminate called after throwing an instance of 'c10::Error'",
        "x" * 299 + "…",
    ]
