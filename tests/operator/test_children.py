"""Each engine's status, read as a stage phase; and the patches that pause and resume children."""

from __future__ import annotations

import pytest

from llm_platform.operator.children import child_state, suspend_patch


def obj(kind, status=None, spec=None, labels=None, **meta):
    return {
        "kind": kind,
        "metadata": {"name": "j-s", "labels": {"llmplatform.dev/attempt": "2", **(labels or {})}, **meta},
        "spec": spec or {},
        "status": status or {},
    }


def cond(kind, status="True", **extra):
    return {"type": kind, "status": status, **extra}


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        ({}, "Pending"),
        ({"conditions": [cond("Created")]}, "Pending"),
        ({"conditions": [cond("Created"), cond("Running")]}, "Running"),
        ({"conditions": [cond("Running", "False"), cond("Restarting")]}, "Running"),
        ({"conditions": [cond("Running", "False"), cond("Succeeded", message="done")]}, "Succeeded"),
        ({"conditions": [cond("Running", "False"), cond("Failed", message="OOMKilled")]}, "Failed"),
        ({"conditions": [cond("Suspended")]}, "Suspended"),
    ],
)
def test_pytorchjob_conditions(status, phase):
    assert child_state(obj("PyTorchJob", status)).phase == phase


def test_pytorchjob_failure_keeps_its_message_and_times():
    state = child_state(
        obj(
            "PyTorchJob",
            {
                "startTime": "2025-01-01T00:00:00Z",
                "conditions": [cond("Failed", message="pod OOMKilled", lastTransitionTime="2025-01-01T01:00:00Z")],
            },
        )
    )
    assert (state.message, state.started, state.finished) == (
        "pod OOMKilled",
        "2025-01-01T00:00:00Z",
        "2025-01-01T01:00:00Z",
    )
    assert state.attempt == 2
    assert state.ref == "PyTorchJob/j-s"


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        ({}, "Pending"),
        ({"jobDeploymentStatus": "Initializing"}, "Pending"),
        ({"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}, "Running"),
        ({"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}, "Succeeded"),
        ({"jobDeploymentStatus": "Complete", "jobStatus": "FAILED"}, "Failed"),
        ({"jobDeploymentStatus": "Failed", "jobStatus": "FAILED"}, "Failed"),
        ({"jobDeploymentStatus": "Failed", "reason": "DeadlineExceeded"}, "Failed"),
        ({"jobDeploymentStatus": "Retrying", "jobStatus": "FAILED"}, "Running"),
        ({"jobDeploymentStatus": "Suspended"}, "Suspended"),
    ],
)
def test_rayjob_status(status, phase):
    assert child_state(obj("RayJob", status)).phase == phase


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        ({}, "Pending"),
        ({"active": 1}, "Running"),
        ({"conditions": [cond("Complete")], "completionTime": "t"}, "Succeeded"),
        ({"conditions": [cond("Failed", reason="BackoffLimitExceeded")]}, "Failed"),
        ({"conditions": [cond("Suspended")]}, "Suspended"),
    ],
)
def test_batch_job_conditions(status, phase):
    assert child_state(obj("Job", status)).phase == phase


def test_batch_job_failure_reason_is_the_message_when_there_is_no_message():
    assert child_state(obj("Job", {"conditions": [cond("Failed", reason="DeadlineExceeded")]})).message == (
        "DeadlineExceeded"
    )


@pytest.mark.parametrize(
    ("spec", "status", "phase"),
    [
        ({"replicas": 2}, {}, "Running"),
        ({"replicas": 2}, {"conditions": [cond("Available")], "updatedReplicas": 1, "availableReplicas": 1}, "Running"),
        (
            {"replicas": 2},
            {"conditions": [cond("Available")], "updatedReplicas": 2, "availableReplicas": 2},
            "Succeeded",
        ),
        (
            {"replicas": 2},
            {"conditions": [cond("Progressing", "False", reason="ProgressDeadlineExceeded")]},
            "Failed",
        ),
    ],
)
def test_deployment_is_done_when_its_rollout_is(spec, status, phase):
    assert child_state(obj("Deployment", status, spec)).phase == phase


def test_a_deployment_marked_suspended_is_suspended():
    state = child_state(obj("Deployment", {}, {"replicas": 0}, annotations={"llmplatform.dev/suspended": "true"}))
    assert (state.phase, state.suspended) == ("Suspended", True)


def test_suspend_switches_are_read_from_the_spec():
    assert child_state(obj("PyTorchJob", spec={"runPolicy": {"suspend": True}})).suspended
    assert child_state(obj("RayJob", spec={"suspend": True})).suspended
    assert not child_state(obj("Job", spec={"suspend": False})).suspended


def test_deletion_in_progress_is_seen():
    assert child_state(obj("Job", deletionTimestamp="2025-01-01T00:00:00Z")).deleting


def test_a_child_without_attempt_label_counts_as_the_first_attempt():
    o = obj("Job")
    o["metadata"]["labels"] = {}
    assert child_state(o).attempt == 1


def test_not_a_workload():
    with pytest.raises(ValueError, match="not a stage workload: Service"):
        child_state(obj("Service"))


def test_suspend_patches():
    assert suspend_patch("PyTorchJob", True) == {"spec": {"runPolicy": {"suspend": True}}}
    assert suspend_patch("RayJob", False) == {"spec": {"suspend": False}}
    assert suspend_patch("Job", True) == {"spec": {"suspend": True}}
    assert suspend_patch("Deployment", True) == {
        "metadata": {"annotations": {"llmplatform.dev/suspended": "true"}},
        "spec": {"replicas": 0},
    }
    assert suspend_patch("Deployment", False, replicas=3) == {
        "metadata": {"annotations": {"llmplatform.dev/suspended": None}},
        "spec": {"replicas": 3},
    }
