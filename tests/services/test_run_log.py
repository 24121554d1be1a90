"""What a local job's `llmp run` log says about each stage: the executor's frame lines, progress lines, failures."""

from __future__ import annotations

from llm_platform.api import StageStatus
from llm_platform.services.local_jobs import job_status
from llm_platform.services.run_log import EXCEPTION_LINE, STEP, LogSummary, failure_cause, select_lines, stage_logs

RULE = "─" * 20 + " LLMJob demo → file:///tmp/x " + "─" * 20
LOG = "\n".join(
    [
        RULE,
        "⏭  data (data): up to date, inputs unchanged",
        "▶  tok (tokenizer)",
        "tokenizer: training byte-level BPE, vocab 300",
        "✓  tok in 3.7s",
        "▶  pretrain (pretrain)",
        "step 10/300 loss 7.1234 lr 3.00e-04",
        "step 20/300 loss 6.5432 lr 3.00e-04",
        "Traceback (most recent call last):",
        '  File "loop.py", line 3, in step',
        "RuntimeError: CUDA out of memory",
        "✗  pretrain failed (exit code 1) after 9.0s",
        "┏━━━━━━━┓",
        "┃ stage ┃",
    ]
)


def test_each_stage_gets_its_own_lines_and_outcome():
    logs = stage_logs(LOG)
    assert {name: log.outcome for name, log in logs.items()} == {
        "data": "up to date",
        "tok": "succeeded",
        "pretrain": "failed",
    }
    assert logs["tok"].lines == LOG.splitlines()[2:5]
    summary = LogSummary().feed(LOG).outcomes()
    assert {name: s.outcome for name, s in summary.items()} == {name: log.outcome for name, log in logs.items()}
    assert summary["pretrain"].step == 20 and summary["tok"].step is None
    assert summary["pretrain"].failure == "RuntimeError: CUDA out of memory"


def test_a_stage_without_its_closing_line_is_running():
    running = "\n".join(LOG.splitlines()[:8])
    assert stage_logs(running)["pretrain"].outcome == "running"
    summary = LogSummary().feed(running).outcomes()
    assert summary["pretrain"].outcome == "running" and summary["pretrain"].step == 20


def test_a_stage_named_like_another_stages_prefix_is_not_confused():
    log = "▶  tok (tokenizer)\nx\n✓  tok2 in 1s\ny\n✓  tok in 2s\n"
    assert stage_logs(log)["tok"].lines == ["▶  tok (tokenizer)", "x", "✓  tok2 in 1s", "y", "✓  tok in 2s"]


def test_the_step_is_read_from_progress_lines_too():
    log = "▶  pretrain (pretrain)\ntrain: 1,200/3,000 steps (40%), 2 min elapsed, ETA 3 min\n"
    assert LogSummary().feed(log).outcomes()["pretrain"].step == 1200


def test_select_lines_by_stage_and_tail():
    assert select_lines(LOG, "pretrain", 2) == ["RuntimeError: CUDA out of memory", LOG.splitlines()[11]]
    assert select_lines(LOG, None, 1) == ["┃ stage ┃"]
    assert select_lines(LOG, None, 0) == []
    assert select_lines(LOG, "eval", None) == []  # a stage that has not started has no lines yet
    assert select_lines(LOG, None, None) == LOG.splitlines()


def test_the_run_failure_message_leads_with_the_exception():
    assert LogSummary().feed(LOG).failure_message().startswith("RuntimeError: CUDA out of memory\n")


def test_status_shows_the_running_stage_its_step_and_a_failed_stage_with_its_error():
    stages = [("data", []), ("tok", ["data"]), ("pretrain", ["tok"]), ("eval", ["pretrain"])]
    committed = {"data": {"version": "v1"}, "tok": {"version": "v2"}}
    running = job_status("running", None, stages, committed, set(), logs=outcomes(LOG.splitlines()[:8]))
    assert (running.stages["pretrain"].phase, running.stages["pretrain"].step) == ("Running", 20)
    assert running.current_stage == "pretrain"
    assert [running.stages[s].phase for s, _ in stages] == ["UpToDate", "Succeeded", "Running", "Pending"]
    # the run is still printing its summary: the stage has failed already, and eval will not run
    failed = job_status("running", None, stages, committed, set(), logs=outcomes(LOG.splitlines()))
    pretrain = failed.stages["pretrain"]
    assert (pretrain.phase, pretrain.step, pretrain.message) == ("Failed", 20, "RuntimeError: CUDA out of memory")
    assert failed.stages["eval"].phase == "Skipped"
    assert failed.current_stage is None
    written = failed.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert written["stages"]["data"] == {"phase": "UpToDate", "attempts": 0, "version": "v1"}


def test_a_running_stage_shows_what_its_progress_file_reports_and_an_old_file_is_ignored():
    stages = [("data", []), ("train", ["data"])]
    reported = StageStatus(phase="Running", step=1200, total_steps=3000, eta_s=180.0, updated="2026-01-01T00:10:00Z")
    old = StageStatus(phase="Failed", message="from an earlier run")
    status = job_status("running", None, stages, {}, {"data"}, progress={"data": reported, "train": old})
    data = status.stages["data"].model_dump(mode="json", by_alias=True, exclude_none=True)
    assert data == {"phase": "Running", "attempts": 0, "step": 1200, "totalSteps": 3000, "etaSeconds": 180.0,
                    "updated": "2026-01-01T00:10:00Z"}  # fmt: skip
    assert status.stages["train"] == StageStatus()  # Pending: the earlier run's words do not apply


def outcomes(lines: list[str]) -> dict:
    return LogSummary().feed("\n".join(lines)).outcomes()


def last_exception(lines: list[str]) -> list[str]:
    """The reading of a whole log the summary must match: the last exception line, searched from the end, and the
    lines after it up to a blank or rule line."""
    error = next((i for i in range(len(lines) - 1, -1, -1) if EXCEPTION_LINE.match(lines[i])), None)
    if error is None:
        return []
    end = next((i for i in range(error + 1, len(lines)) if not lines[i].strip() or lines[i][:1] in "✗─┏┌"), None)
    return lines[error:end]


def test_a_log_fed_in_pieces_summarises_as_it_does_whole():
    """The jobs API feeds a run's log as it grows: any split at line ends gives what the whole log gives, and the
    whole-log reading of each stage (its lines from `stage_logs`: the step, the failure) is the same."""
    log = "\n".join(
        [
            *LOG.splitlines(),
            "▶  eval (eval)",
            "eval: 3/10 steps (30%)",
            "ValueError: first problem",
            "  more about it",
            "",
            "still going\rstep 4/10 over a carriage return",
            "✗  eval failed (exit code 2) after 1.0s",
            "▶  other (data)",
            "printed, no exception",
        ]
    )
    whole = LogSummary().feed(log)
    for at in range(len(log.splitlines()) + 1):
        lines = log.splitlines(keepends=True)
        pieces = LogSummary().feed("".join(lines[:at])).feed("".join(lines[at:]))
        assert (pieces.outcomes(), pieces.failure_message()) == (whole.outcomes(), whole.failure_message())
    for name, stage in stage_logs(log).items():
        got = whole.outcomes()[name]
        body = [line for line in stage.lines if not line.startswith(("▶", "✗"))]
        assert got.outcome == stage.outcome
        steps = [int((m["step"] or m["done"]).replace(",", "")) for m in map(STEP.search, stage.lines) if m]
        assert got.step == (steps[-1] if steps else None)
        assert got.failure == "\n".join(last_exception(body) or body[-12:])
        assert failure_cause(body) == last_exception(body)
    assert whole.outcomes()["eval"].step == 4
    assert whole.outcomes()["eval"].failure == "ValueError: first problem\n  more about it"
    assert whole.outcomes()["other"].failure == "printed, no exception"
    lines = log.splitlines()
    assert whole.failure_message() == "\n".join([*last_exception(lines), *lines[-12:]])


def test_a_summary_keeps_only_the_jobs_stages_and_a_bounded_part_of_each():
    log = "▶  intruder (data)\nx\n✓  intruder in 1s\n▶  data (data)\n" + "ValueError: " + "y" * 10_000 + "\n"
    summary = LogSummary(["data"]).feed(log + "line\n" * 1000)
    assert list(summary.outcomes()) == ["data"]
    failure = summary.outcomes()["data"].failure
    assert failure.startswith("ValueError: yyy") and len(failure.splitlines()) == 50  # its first 50 lines
    assert max(len(line) for line in failure.splitlines()) == 4000
