"""The LLMJob's status as kstatus, Flux and Argo CD read it, written by the real operator against the emulated API:
camelCase keys, `observedGeneration` equal to the object's generation, and a `Ready` condition that is Unknown on the
way, True on success and False with a reason on failure (the sequence of every status the operator wrote)."""

from __future__ import annotations

from .cluster import wait_for
from .helpers import DATA, TOKENIZER, child, job_dict

SNAKE_CASE = {"observed_generation", "current_stage"}


def ready_history(cluster, job: str = "demo") -> list[tuple[str, str]]:
    """(status, reason) of each distinct Ready condition the operator wrote to the job's /status, in order."""
    seen: list[tuple[str, str]] = []
    for request in cluster.operator_requests():
        if request.method != "PATCH" or not str(request.url).endswith(f"/llmjobs/{job}/status"):
            continue
        for condition in ((request.data or {}).get("status") or {}).get("conditions") or []:
            if condition["type"] == "Ready" and (not seen or seen[-1] != (condition["status"], condition["reason"])):
                seen.append((condition["status"], condition["reason"]))
    return seen


def ready(cluster, job: str = "demo") -> dict:
    conditions = ((cluster.job(job) or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


def test_ready_goes_from_unknown_to_true_on_success_with_camel_case_status(cluster):
    cluster.apply(job_dict(DATA, TOKENIZER))
    # a status written by an older operator, in snake_case: the new one must not leave it behind
    cluster.kube.patch(
        "llmplatform.dev/v1alpha1", "LLMJob", "team", "demo", {"status": {"observed_generation": 1}}, "status"
    )
    cluster.start_operator()
    wait_for(lambda: ready(cluster).get("status") == "Unknown", what="Ready Unknown")
    wait_for(lambda: cluster.child("Job", child("demo", "data")), what="the data Job")
    cluster.finish("Job", child("demo", "data"), "Succeeded")
    wait_for(lambda: cluster.child("Job", child("demo", "tok")), what="the tokenizer Job")
    cluster.finish("Job", child("demo", "tok"), "Succeeded")
    wait_for(lambda: ready(cluster).get("status") == "True", what="Ready True")

    job = cluster.job("demo")
    status = job["status"]
    assert not SNAKE_CASE & status.keys(), status.keys()
    assert status["observedGeneration"] == job["metadata"]["generation"]
    condition = ready(cluster)
    assert condition["reason"] == "Succeeded" and condition["message"] == "all 2 stages succeeded"
    assert condition["observedGeneration"] == job["metadata"]["generation"] and condition["lastTransitionTime"]
    history = ready_history(cluster)
    assert history[0][0] == "Unknown" and history[-1] == ("True", "Succeeded")
    assert {s for s, _ in history} <= {"Unknown", "True"}


def test_ready_is_false_with_a_reason_when_a_stage_fails(cluster):
    cluster.start_operator()
    cluster.apply(job_dict(DATA, TOKENIZER))
    wait_for(lambda: cluster.child("Job", child("demo", "data")), what="the data Job")
    cluster.finish("Job", child("demo", "data"), "Failed", "disk full")
    wait_for(lambda: ready(cluster).get("status") == "False", what="Ready False")
    condition = ready(cluster)
    assert condition["reason"] == "StageFailed" and "stage data failed" in condition["message"]
    assert "disk full" in condition["message"]
    assert ready_history(cluster) == [("Unknown", "Running"), ("False", "StageFailed")]
    assert cluster.stage("demo", "tok")["phase"] == "Skipped"


def test_ready_is_false_with_reason_invalid_spec_for_a_spec_the_operator_refuses(cluster):
    cluster.start_operator()
    body = job_dict(DATA, TOKENIZER)
    body["spec"]["stages"][1]["needs"] = ["nowhere"]
    cluster.apply(body)
    wait_for(lambda: ready(cluster).get("status") == "False", what="Ready False")
    condition = ready(cluster)
    assert condition["reason"] == "InvalidSpec" and "nowhere" in condition["message"]
    assert cluster.job("demo")["status"]["observedGeneration"] == 1
