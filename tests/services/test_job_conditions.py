"""The local backend answers the operator's conditions (`Ready` first, then one per phase), from the same function,
over real HTTP with real `llmp run` processes: Unknown while running, True once succeeded, False with the failure's
reason and message; and the failed stage's console copy in the store holds its error."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from llm_platform.api import JobStatus
from llm_platform.api.conditions import rfc3339
from llm_platform.services.job_state import JobRow
from llm_platform.services.local_jobs import local_conditions

from .server import blocked_job, failing_data_stage, job_body, wait_for

THREE = {"jobs": {"max_running": 3}}


def conditions(api, name: str) -> dict[str, dict]:
    status = api.client.get(f"/v1/jobs/{name}", headers=api.team).json()["status"]
    return {c["type"]: c for c in status.get("conditions", [])}


def ended(api, name: str) -> bool:
    """Whether the job ended; if not, after half a second (the jobs' processes need the CPU more than the poll)."""
    if api.client.get(f"/v1/jobs/{name}", headers=api.team).json()["status"]["phase"] in ("Succeeded", "Failed"):
        return True
    time.sleep(0.5)
    return False


@pytest.mark.parametrize("api", [THREE], indirect=True)
def test_ready_is_unknown_while_running_true_when_succeeded_and_false_with_the_failure(api, tmp_path):
    empty = failing_data_stage(tmp_path)
    for body in (job_body("fine"), job_body("broken", empty), blocked_job("busy", tmp_path / "pipe")):
        assert api.client.post("/v1/jobs", json=body, headers=api.team).status_code == 201
    for name in ("fine", "broken"):
        wait_for(lambda n=name: ended(api, n), f"job {name} to end", timeout=120)

    fine, broken, busy = (conditions(api, name) for name in ("fine", "broken", "busy"))
    assert list(fine) == ["Ready", "Running", "Suspended", "Succeeded", "Failed"]  # the operator's order
    assert (fine["Ready"]["status"], fine["Ready"]["reason"]) == ("True", "Succeeded")
    assert fine["Ready"]["message"] == "all 1 stages succeeded"
    assert {t: c["status"] for t, c in fine.items() if t != "Ready"} == {
        "Running": "False",
        "Suspended": "False",
        "Succeeded": "True",
        "Failed": "False",
    }
    row = api.jobs.table.get("team", "fine")
    assert fine["Ready"]["lastTransitionTime"] == rfc3339(row.finished)  # Unknown until the end, then True
    assert fine["Suspended"]["lastTransitionTime"] == rfc3339(row.submitted)  # never moved
    datetime.strptime(fine["Ready"]["lastTransitionTime"], "%Y-%m-%dT%H:%M:%SZ")

    ready = broken["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "StageFailed")
    assert "kept no training documents" in ready["message"]  # the run's own error
    assert broken["Failed"]["status"] == "True" and broken["Failed"]["reason"] == "Failed"

    assert (busy["Ready"]["status"], busy["Ready"]["reason"]) == ("Unknown", "Running")
    assert busy["Running"]["status"] == "True" and busy["Ready"]["message"] == "running data"

    # the failed stage's console, copied into its store as it ran, ends with its error
    stage = api.client.get("/v1/jobs/broken", headers=api.team).json()["status"]["stages"]["data"]
    console = Path(stage["artifacts"]["console.log"]).read_text()
    assert console.rstrip().splitlines()[-1].startswith("ValueError: the data stage kept no training documents")


def row(state: str, started: float | None, finished: float | None) -> JobRow:
    return JobRow("team", "j", "", state, 1, None, 0, 1_000.0, started, finished)


def test_each_condition_moves_when_the_job_changed_phase():
    queued = local_conditions(row("queued", None, None), JobStatus(phase="Pending", message="queued: 2 job(s) ahead"))
    assert [(c.type, c.status, c.last_transition_time) for c in queued][:2] == [
        ("Ready", "Unknown", rfc3339(1_000)),
        ("Running", "False", rfc3339(1_000)),
    ]
    assert queued[0].message == "queued: 2 job(s) ahead"
    failed = local_conditions(row("ended", 1_010.0, 1_070.0), JobStatus(phase="Failed", message="boom"))
    times = {c.type: (c.status, c.last_transition_time) for c in failed}
    assert times == {
        "Ready": ("False", rfc3339(1_070)),
        "Running": ("False", rfc3339(1_070)),  # True from 1010, False again at the end
        "Suspended": ("False", rfc3339(1_000)),
        "Succeeded": ("False", rfc3339(1_000)),
        "Failed": ("True", rfc3339(1_070)),
    }
    assert (failed[0].reason, failed[0].message) == ("StageFailed", "boom")
