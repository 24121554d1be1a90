"""Live visibility: plain progress lines without a terminal, each stage's progress file and live log copies in the
store (local and S3), and `llmp status` on a real run, while it runs and after."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from llm_platform.api.status import StageStatus, progress_key
from llm_platform.cli import app
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.progress import StepProgress, duration, eta_s
from llm_platform.trainer.stages.progress import (
    StageReporter,
    job_status_from_store,
    read_stage_status,
    stale_after_s,
)

from .test_run_local import JOB


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_without_a_terminal_progress_is_a_plain_line_every_interval_and_at_the_end():
    out = io.StringIO()
    clock = FakeClock()
    heard = []
    console = Console(file=out, force_terminal=False, width=200)
    with StepProgress(console, "train", 35, unit="steps", every_s=10, clock=clock, listener=lambda *a: heard.append(a)):
        pass  # nothing done: no line
    assert out.getvalue() == ""
    with StepProgress(
        console, "train", 35, unit="steps", every_s=10, clock=clock, listener=lambda *a: heard.append(a)
    ) as p:
        for _ in range(35):
            clock.now += 1.0
            p.update(p.done + 1, status="loss 3.2")
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "train: 10/35 steps (29%)",
        "train: 20/35 steps (57%)",
        "train: 30/35 steps (86%)",
        "train: 35/35 steps (100%)",
    ]
    assert lines[0] == "train: 10/35 steps (29%), loss 3.2, 10 s elapsed, ETA 25 s"
    assert heard[-1] == (35, 35) and len(heard) == 35


def test_a_count_without_total_has_no_eta():
    out = io.StringIO()
    clock = FakeClock()
    with StepProgress(Console(file=out, force_terminal=False), "data", unit="documents", every_s=5, clock=clock) as p:
        clock.now = 6
        p.advance(1200)
    assert out.getvalue().splitlines()[0] == "data: 1,200 documents, 6 s elapsed"


def test_eta_and_duration():
    assert eta_s(10, 90, 5.0) == 45.0
    assert eta_s(0, 90, 5.0) is None and eta_s(10, None, 5.0) is None
    assert [duration(s) for s in (0.4, 42, 301, 7380)] == ["0 s", "42 s", "5 min 1 s", "2 h 3 min"]


@pytest.fixture
def store(any_store) -> ArtifactStore:
    return any_store


def wait_for(condition, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_running_stage_keeps_its_status_and_log_copies_current_in_the_store(store, tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text('{"step": 1}\n')
    reporter = StageReporter(store, "pretrain", every_s=0.05, console=Console(file=io.StringIO()))
    reporter.watch(log)
    reporter.start()
    reporter(1, 10)
    reporter(5, 10)
    status = wait_for(lambda: (s := read_stage_status(store, "pretrain")).step == 5 and s, "step 5 in the store")
    assert (status.phase, status.total_steps, status.started is not None) == ("Running", 10, True)
    assert status.eta_s is not None and status.eta_s >= 0
    with log.open("a") as f:
        f.write('{"step": 5}\n')
    live = "pretrain/live/train_log.jsonl"
    wait_for(lambda: (store.backend.get_bytes(live) or b"").count(b"\n") == 2, "the second log line in the store")
    assert status.artifacts["train_log.jsonl"].endswith(live)

    out = tmp_path / "out"
    (out / "model").mkdir(parents=True)
    (out / "model" / "config.json").write_text("{}")
    manifest = store.commit("pretrain", out, {"metrics": {"loss_end": 2.5}})
    reporter.finish("Succeeded", manifest=manifest)
    done = read_stage_status(store, "pretrain")
    assert (done.phase, done.version, done.metrics, done.eta_s) == (
        "Succeeded",
        manifest.version,
        {"loss_end": 2.5},
        None,
    )
    assert done.artifacts["model"].endswith(f"pretrain/versions/{manifest.version}/model")
    time.sleep(0.2)  # the heartbeat has stopped: nothing overwrites the last word
    assert read_stage_status(store, "pretrain") == done
    listed = status_json(store.uri)  # `llmp status` on the store's URI, local or S3
    assert (listed["phase"], list(listed["stages"]), listed["storage"]) == ("Succeeded", ["pretrain"], store.uri)


def test_a_stage_with_only_a_manifest_reads_as_succeeded_and_one_with_nothing_as_pending(tmp_path):
    store = ArtifactStore.open(str(tmp_path))
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f.txt").write_text("hi")
    manifest = store.commit("data", tmp_path / "x")
    status = read_stage_status(store, "data")
    assert (status.phase, status.version) == ("Succeeded", manifest.version)
    assert read_stage_status(store, "eval").phase == "Pending"


def test_job_status_from_stored_stages():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    fresh, old = [(now - timedelta(seconds=s)).isoformat() for s in (5, 600)]
    running = job_status_from_store(
        {"data": StageStatus(phase="UpToDate"), "train": StageStatus(phase="Running", updated=fresh)}, now
    )
    assert (running.phase, running.current_stage, running.stages["train"].message) == ("Running", "train", None)
    stale = job_status_from_store({"train": StageStatus(phase="Running", updated=old)}, now)
    assert stale.stages["train"].message.startswith("no report for 10 min")
    failed = job_status_from_store(
        {"a": StageStatus(phase="Failed", message="exit code 1"), "b": StageStatus(phase="Skipped")}, now
    )
    assert (failed.phase, failed.message) == ("Failed", "stage a failed: exit code 1")
    done = job_status_from_store({"a": StageStatus(phase="Succeeded"), "b": StageStatus(phase="UpToDate")}, now)
    assert done.phase == "Succeeded"
    assert job_status_from_store({"a": StageStatus(phase="Succeeded"), "b": StageStatus()}, now).phase == "Pending"


def test_a_slow_heartbeat_is_not_called_a_stopped_stage(monkeypatch):
    """With LLMP_PROGRESS_EVERY_S above a minute, a stage silent for less than three heartbeats is still running."""
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    quiet, gone = [(now - timedelta(seconds=s)).isoformat() for s in (300, 400)]
    monkeypatch.setenv("LLMP_PROGRESS_EVERY_S", "120")
    assert stale_after_s() == 360
    assert job_status_from_store({"t": StageStatus(phase="Running", updated=quiet)}, now).stages["t"].message is None
    stopped = job_status_from_store({"t": StageStatus(phase="Running", updated=gone)}, now).stages["t"].message
    assert stopped.startswith("no report for 6 min")
    for every, after in (("10", 60), ("0", 60), ("soon", 60)):  # never under a minute; a bad value keeps it
        monkeypatch.setenv("LLMP_PROGRESS_EVERY_S", every)
        assert stale_after_s() == after


def test_llmp_run_records_the_stages_it_did_not_start_and_a_stage_that_died_silently(tmp_path):
    from llm_platform.executor import record_phase

    store = ArtifactStore.open(str(tmp_path))
    store.write_json(progress_key("train"), StageStatus(phase="Running", step=7, total_steps=10).model_dump())
    record_phase(store, "train", "Failed", "killed by signal 9")
    record_phase(store, "eval", "Skipped", "not run: an earlier stage failed")
    train, evaluation = read_stage_status(store, "train"), read_stage_status(store, "eval")
    assert (train.phase, train.message, train.step) == ("Failed", "killed by signal 9", 7)  # what it said is kept
    assert (evaluation.phase, evaluation.step) == ("Skipped", None)
    store.write_json(progress_key("tok"), StageStatus(phase="Failed", message="ValueError: empty split").model_dump())
    record_phase(store, "tok", "Failed", "exit code 1")
    assert read_stage_status(store, "tok").message == "ValueError: empty split"  # the stage's own last word stays


def status_json(*args: str) -> dict:
    result = CliRunner().invoke(app, ["status", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.slow
def test_llmp_status_while_a_real_job_runs_and_after(tmp_path):
    """A tiny job (data, tokenizer, pretrain) run by `llmp run` in the background, its output piped to a file."""
    job = tmp_path / "job.yaml"
    # TensorBoard's event files are mirrored too, where a writer for them is installed
    tensorboard = any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX"))
    spec = JOB.split("  - name: eval")[0].replace("STEPS", "200")
    job.write_text(spec.replace("log_every: 2,", "log_every: 2, tensorboard: true,") if tensorboard else spec)
    workdir = tmp_path / "w"
    env = {**os.environ, "LLMP_PROGRESS_EVERY_S": "0.5"}
    with open(tmp_path / "run.log", "w") as log:
        run = subprocess.Popen(
            [sys.executable, "-m", "llm_platform.cli", "run", str(job), "--workdir", str(workdir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        store = ArtifactStore.open(str(workdir))

        def training():
            status = status_json(str(job), "--workdir", str(workdir))
            pretrain = status["stages"]["pretrain"]
            return pretrain["phase"] == "Running" and pretrain.get("step", 0) >= 20 and status

        status = wait_for(training, "pretrain to report its step", timeout=300)
        assert status["phase"] == "Running" and status["current_stage"] == "pretrain"
        assert [s["phase"] for s in status["stages"].values()] == ["Succeeded", "Succeeded", "Running"]
        pretrain = status["stages"]["pretrain"]
        assert pretrain["total_steps"] == 200 and pretrain["eta_s"] > 0
        assert store.manifest("pretrain") is None  # nothing committed yet, and yet the log is there
        live = Path(pretrain["artifacts"]["train_log.jsonl"])
        assert live.is_relative_to(workdir) and json.loads(live.read_text().splitlines()[0])["step"] == 2
        if tensorboard:
            events = list(Path(pretrain["artifacts"]["tensorboard"]).glob("events.out.tfevents.*"))
            assert events and events[0].stat().st_size > 0
        assert run.wait(timeout=300) == 0
    finally:
        run.kill()
        run.wait()
    output = (tmp_path / "run.log").read_text()
    assert "data: 25 documents" in output  # the data stage's count, in a log
    assert any(line.startswith("train: ") and "steps (" in line for line in output.splitlines())

    after = status_json(str(workdir))  # a workdir alone: stages read from the store, in the order they ran
    assert list(after["stages"]) == ["data", "tokenizer", "pretrain"]
    assert after["phase"] == "Succeeded"
    pretrain = after["stages"]["pretrain"]
    assert pretrain["step"] == 200 and Path(pretrain["artifacts"]["model"], "config.json").is_file()
    table = CliRunner().invoke(app, ["status", str(workdir)]).output
    assert f"pretrain model: {pretrain['artifacts']['model']}" in table

    again = subprocess.run(
        [sys.executable, "-m", "llm_platform.cli", "run", str(job), "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    rerun = status_json(str(job), "--workdir", str(workdir))
    assert [s["phase"] for s in rerun["stages"].values()] == ["UpToDate"] * 3
    assert rerun["phase"] == "Succeeded" and rerun["stages"]["pretrain"]["version"] == pretrain["version"]
    assert store.read_json(progress_key("pretrain"))["message"].startswith("not run: up to date")


def test_llmp_status_shows_a_failed_stages_console_end_across_a_rotation(tmp_path):
    """Just after a rotation, console.log holds only the error: the lines before it are in console.1.log."""
    from llm_platform.trainer.stages.progress import live_key

    store = ArtifactStore.open(str(tmp_path))
    live = live_key("data")
    store.backend.put_bytes(f"{live}/console.1.log", b"data: 10 documents\ndata: 20 documents\nTraceback (most recent")
    store.backend.put_bytes(f"{live}/console.log", b" call last):\n  File 'a.py'\nValueError: bad line 3\n")
    where = str(tmp_path / live / "console.log")
    failed = StageStatus(phase="Failed", message="bad line 3", artifacts={"console.log": where})
    store.write_json(progress_key("data"), failed.model_dump(mode="json", exclude_none=True))
    shown = CliRunner().invoke(app, ["status", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert "data failed; the end of its console" in shown.output
    end = shown.output.splitlines()[-3:]  # what the stage printed before the rotation, then the error
    assert end == ["data: 10 documents", "data: 20 documents", "ValueError: bad line 3"]


def test_llmp_status_shows_a_stage_whose_progress_file_has_a_time_it_cannot_read(tmp_path):
    """The progress file is written by the job's pods: an odd `updated` is shown as written, not a failure."""
    store = ArtifactStore.open(str(tmp_path))
    for name, updated in (("data", "yesterday"), ("tokenizer", "2026-01-01T00:00:00")):  # no time zone
        stored = StageStatus(phase="Succeeded", updated=updated, started=updated)
        store.write_json(progress_key(name), stored.model_dump(mode="json", exclude_none=True))
    shown = CliRunner().invoke(app, ["status", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert "yesterday" in shown.output and "2026-01-01T00:00:00" in shown.output


def test_llmp_status_shows_messages_with_brackets_as_written(tmp_path):
    """A stage's message is text, not rich markup: `[/data/x.jsonl]` is shown, not read as a closing tag."""
    store = ArtifactStore.open(str(tmp_path))
    failed = StageStatus(phase="Failed", message="cannot read [/data/x.jsonl] or [bold]this[/bold]")
    store.write_json(progress_key("data"), failed.model_dump(mode="json", exclude_none=True))
    shown = CliRunner().invoke(app, ["status", str(tmp_path)], env={"COLUMNS": "300"})
    assert shown.exit_code == 0, shown.output
    assert shown.output.count("cannot read [/data/x.jsonl] or [bold]this[/bold]") == 2  # the job's line and the row
