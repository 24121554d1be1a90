"""A local job's `run.log` summarised for its status and re-read only for what its run appended: never stale, and
an unchanged log is not parsed again (a spy on the real `LogSummary.feed` counts what is parsed)."""

from __future__ import annotations

import os

import pytest

from llm_platform.services import log_summaries
from llm_platform.services.log_summaries import LogSummaries
from llm_platform.services.run_log import LogSummary

from .server import failing_data_stage, job_body, wait_for

START = "▶  data (data)\ndata: 10 documents\n"


@pytest.fixture
def parsed(monkeypatch) -> list[str]:
    """The text each `LogSummary.feed` call parses, in order (the real method runs)."""
    texts: list[str] = []
    feed = LogSummary.feed

    def spy(self, text):
        texts.append(text)
        return feed(self, text)

    monkeypatch.setattr(LogSummary, "feed", spy)
    return texts


def test_an_unchanged_log_is_not_parsed_again_and_a_grown_one_only_for_what_was_appended(tmp_path, parsed):
    log = tmp_path / "run.log"
    log.write_text(START)
    summaries = LogSummaries()
    first = summaries.status("job", log, ["data"])
    assert first.stages["data"].outcome == "running" and parsed == [START]
    assert summaries.status("job", log, ["data"]) is first and len(parsed) == 1  # unchanged: one fstat, no parse

    with log.open("a") as f:
        f.write("ValueError: no documents kept\n✗  data failed (exit code 1) after 1.0s\nsumm")
    after = summaries.status("job", log, ["data"])
    assert parsed[1:] == ["ValueError: no documents kept\n✗  data failed (exit code 1) after 1.0s\n", "summ"]
    assert (after.stages["data"].outcome, after.stages["data"].failure) == ("failed", "ValueError: no documents kept")
    assert after.failure_message.endswith("after 1.0s\nsumm")  # the unfinished last line is in, as it stands

    with log.open("a") as f:
        f.write("ary\n")
    assert summaries.status("job", log, ["data"]).failure_message.endswith("after 1.0s\nsummary")
    assert parsed[3] == "summary\n"  # the line finished: from its start, once


def test_a_log_rewritten_replaced_or_cut_is_read_again_from_the_start(tmp_path, parsed):
    log = tmp_path / "run.log"
    log.write_text(START + "✓  data in 1.0s\n")
    summaries = LogSummaries()
    assert summaries.status("job", log, ["data"]).stages["data"].outcome == "succeeded"

    same_size = START + "✗  data failed.\n"  # as long as what it replaces, another mtime
    assert len(same_size) == len(log.read_text())
    log.write_text(same_size)
    os.utime(log, ns=(0, 1))  # so the rewrite shows however coarse the file system's clock
    assert summaries.status("job", log, ["data"]).stages["data"].outcome == "failed"
    assert parsed[-1] == same_size

    replacement = tmp_path / "new.log"
    replacement.write_text(START + START + "✓  data in 2.0s\n")
    os.replace(replacement, log)  # another file where the log was
    assert summaries.status("job", log, ["data"]).stages["data"].outcome == "succeeded"

    log.write_text(START[:5])  # shorter than what was read
    assert "data" not in summaries.status("job", log, ["data"]).stages
    log.unlink()
    assert summaries.status("job", log, ["data"]) is None


def test_a_log_that_grew_past_the_read_limit_is_read_from_its_last_limit_bytes(tmp_path, parsed, monkeypatch):
    monkeypatch.setattr(log_summaries, "LOG_READ_LIMIT", 64)
    log = tmp_path / "run.log"
    log.write_text(START)
    summaries = LogSummaries()
    summaries.status("job", log, ["data"])
    with log.open("a") as f:
        f.write("x" * 100 + "\n✓  data in 1.0s\n")
    summaries.status("job", log, ["data"])
    assert len(parsed[-1]) <= 64  # not the 100 bytes appended: the last 64 of the file, as a first read takes


def test_summaries_of_many_jobs_are_bounded(tmp_path, parsed):
    """The most recently read are kept; one past the bound, or forgotten, is read whole at its next read."""
    summaries = LogSummaries(max_jobs=2)
    log = tmp_path / "run.log"
    log.write_text(START)
    for key in ("a", "b", "c"):
        summaries.status(key, log, ["data"])
    count = len(parsed)
    summaries.status("c", log, ["data"])
    summaries.status("b", log, ["data"])
    assert len(parsed) == count  # kept: not parsed again
    summaries.forget("b")
    summaries.status("a", log, ["data"])
    summaries.status("b", log, ["data"])
    assert parsed[count:] == [START, START]


def test_status_gets_see_a_changed_log_and_do_not_parse_an_unchanged_one(api, tmp_path, parsed):
    """Through the jobs API: a job that ended, its status read twice (the second parses nothing), then its log
    appended to, and the next status shows what was appended."""
    job = job_body("broken", failing_data_stage(tmp_path))
    assert api.client.post("/v1/jobs", json=job, headers=api.team).status_code == 201

    def failed():
        status = api.client.get("/v1/jobs/broken", headers=api.team).json()["status"]
        return status["phase"] == "Failed" and status

    status = wait_for(failed, "the job to fail", timeout=120)
    assert "kept no training documents" in status["message"]
    before = len(parsed)
    assert api.client.get("/v1/jobs/broken", headers=api.team).json()["status"] == status
    assert api.client.get("/v1/jobs", headers=api.team).status_code == 200
    assert len(parsed) == before  # two more reads of an unchanged log: nothing parsed

    row = api.jobs.table.get("team", "broken")
    with api.jobs.log_path(row).open("a") as f:
        f.write("RuntimeError: appended after the end\n")
    again = api.client.get("/v1/jobs/broken", headers=api.team).json()["status"]
    assert again["message"].startswith("RuntimeError: appended after the end\n")
    assert parsed[before:] == ["RuntimeError: appended after the end\n"]
