"""The reconcile decision: what to create, retry, suspend or delete, and the status that results."""

from __future__ import annotations

from llm_platform.api import JobStatus, StageStatus
from llm_platform.operator.children import ChildState
from llm_platform.operator.plan import Observed, StageArtifacts, plan

from .helpers import DATA, EVAL, PRETRAIN, SERVE, TOKENIZER, job

NOW = "2025-06-01T12:00:00Z"
REFS = {"data": "Job/demo-data", "tok": "Job/demo-tok", "pretrain": "PyTorchJob/demo-pretrain",
        "eval": "Job/demo-eval", "serve": "Deployment/demo-serve"}  # fmt: skip


def pipeline(**spec):
    return job(DATA, TOKENIZER, PRETRAIN, EVAL, **spec)


def child(stage, phase, attempt=1, **kw):
    kind, name = REFS[stage].split("/")
    return ChildState(kind=kind, name=name, attempt=attempt, phase=phase, **kw)


def observe(children=(), **kw):
    return Observed(children={c.name.removeprefix("demo-"): c for c in children}, now=NOW, workload_refs=REFS, **kw)


def status(**stages):
    return JobStatus(stages={name: StageStatus(**fields) for name, fields in stages.items()})


DONE = {"phase": "Succeeded", "attempts": 1}


def test_a_new_job_starts_its_first_stage_and_waits_with_the_rest():
    out = plan(pipeline(), None, observe())
    assert out.create == ["data"]
    assert out.status.phase == "Running"
    assert out.status.current_stage == "data"
    data, tok = out.status.stages["data"], out.status.stages["tok"]
    assert (data.phase, data.attempts, data.child, data.started) == ("Pending", 1, "Job/demo-data", NOW)
    assert (tok.phase, tok.attempts, tok.message) == ("Pending", 0, "waiting for data")
    assert [e.reason for e in out.events] == ["StageStarted"]


def test_a_running_child_is_mirrored():
    previous = plan(pipeline(), None, observe()).status
    out = plan(pipeline(), previous, observe([child("data", "Running", started="2025-06-01T11:59:00Z")]))
    assert out.create == []
    assert out.status.stages["data"].phase == "Running"
    assert out.status.stages["data"].started == NOW  # the operator's own start time is kept


def test_when_a_stage_succeeds_the_next_starts_in_the_same_pass():
    previous = status(data={"phase": "Running", "attempts": 1})
    out = plan(pipeline(), previous, observe([child("data", "Succeeded", finished="2025-06-01T11:00:00Z")]))
    assert out.status.stages["data"].phase == "Succeeded"
    assert out.status.stages["data"].finished == "2025-06-01T11:00:00Z"
    assert out.create == ["tok"]
    assert [e.reason for e in out.events] == ["StageSucceeded", "StageStarted"]


def test_all_stages_succeeded_is_a_succeeded_job_with_its_condition():
    previous = status(data=DONE, tok=DONE, pretrain=DONE, eval={"phase": "Running", "attempts": 1})
    out = plan(pipeline(), previous, observe([child("eval", "Succeeded")]))
    assert out.status.phase == "Succeeded"
    assert out.status.current_stage is None
    assert {c.type: c.status for c in out.status.conditions} == {
        "Ready": "True",
        "Running": "False",
        "Suspended": "False",
        "Succeeded": "True",
        "Failed": "False",
    }
    assert "Succeeded" in [e.reason for e in out.events]


def test_a_failed_training_child_is_retried_from_its_latest_checkpoint():
    previous = status(data=DONE, tok=DONE, pretrain={"phase": "Running", "attempts": 1})
    checkpoint = "s3://bucket/demo/pretrain/checkpoints/abc/step_00000500"
    out = plan(
        pipeline(),
        previous,
        observe(
            [child("pretrain", "Failed", message="NCCL timeout")],
            artifacts={"pretrain": StageArtifacts(checkpoint=checkpoint, step=500)},
        ),
    )
    stage = out.status.stages["pretrain"]
    assert (stage.phase, stage.attempts, stage.checkpoint, stage.step) == ("Pending", 2, checkpoint, 500)
    assert stage.message == f"attempt 1 failed: NCCL timeout; retrying from checkpoint {checkpoint} (attempt 2 of 3)"
    assert out.delete == ["pretrain"]
    assert out.create == []
    assert out.status.phase == "Running"
    assert [e.reason for e in out.events] == ["StageRetrying"]


def test_the_retry_waits_for_the_failed_child_to_go_then_creates_the_next_attempt():
    previous = status(data=DONE, tok=DONE, pretrain={"phase": "Pending", "attempts": 2})
    deleting = child("pretrain", "Failed", attempt=1, deleting=True)
    assert plan(pipeline(), previous, observe([deleting])).create == []
    assert plan(pipeline(), previous, observe([deleting])).delete == []
    out = plan(pipeline(), previous, observe())
    assert out.create == ["pretrain"]
    assert out.status.stages["pretrain"].attempts == 2


def test_the_last_allowed_failure_fails_the_stage_and_skips_what_needs_it():
    previous = status(data=DONE, tok=DONE, pretrain={"phase": "Running", "attempts": 3})
    out = plan(pipeline(), previous, observe([child("pretrain", "Failed", attempt=3, message="loss is NaN")]))
    assert out.status.stages["pretrain"].phase == "Failed"
    assert out.status.stages["pretrain"].message == "loss is NaN after 3 attempts"
    assert out.status.stages["eval"].phase == "Skipped"
    assert out.status.phase == "Failed"
    assert out.status.message == "stage pretrain failed: loss is NaN after 3 attempts"
    assert out.delete == [] and out.create == []
    assert [e.reason for e in out.events] == ["StageFailed", "Failed"]


def test_max_retries_zero_means_one_attempt():
    previous = status(data=DONE, tok=DONE, pretrain={"phase": "Running", "attempts": 1})
    out = plan(pipeline(max_retries=0), previous, observe([child("pretrain", "Failed")]))
    assert out.status.stages["pretrain"].phase == "Failed"


def test_stages_that_do_not_train_are_not_retried():
    previous = status(data={"phase": "Running", "attempts": 1})
    out = plan(pipeline(), previous, observe([child("data", "Failed", message="no such bucket")]))
    assert out.status.stages["data"].phase == "Failed"
    assert out.status.stages["data"].message == "no such bucket"
    assert out.delete == []


def test_suspend_pauses_running_children_and_starts_nothing():
    previous = status(data=DONE, tok={"phase": "Running", "attempts": 1})
    out = plan(pipeline(suspend=True), previous, observe([child("data", "Succeeded"), child("tok", "Running")]))
    assert out.suspend == {"tok": True}  # the finished data Job has nothing to pause
    assert out.create == []
    assert out.status.phase == "Suspended"
    assert "Suspended" in [e.reason for e in out.events]


def test_a_suspended_job_starts_no_new_stage():
    previous = status(data=DONE)
    out = plan(pipeline(suspend=True), previous, observe([child("data", "Succeeded")]))
    assert out.create == []
    assert out.status.stages["tok"].message == "job suspended"


def test_resume_unpauses_children():
    previous = status(data=DONE, tok={"phase": "Suspended", "attempts": 1})
    previous.phase = "Suspended"
    out = plan(pipeline(), previous, observe([child("tok", "Suspended", suspended=True)]))
    assert out.suspend == {"tok": False}
    assert "Resumed" in [e.reason for e in out.events]


def test_under_kueue_a_suspended_child_is_queued_and_admission_is_left_to_kueue():
    previous = status(data={"phase": "Pending", "attempts": 1})
    out = plan(pipeline(), previous, observe([child("data", "Suspended", suspended=True)], queued=True))
    assert out.suspend == {}
    assert out.status.stages["data"].phase == "Pending"
    assert out.status.stages["data"].message == "queued: waiting for Kueue to admit it"


def test_suspending_a_finished_pipeline_scales_its_server_to_zero():
    j = job(DATA, TOKENIZER, PRETRAIN, SERVE, suspend=True)
    previous = status(data=DONE, tok=DONE, pretrain=DONE, serve=DONE)
    out = plan(j, previous, observe([child("serve", "Succeeded")]))
    assert out.suspend == {"serve": True}


def test_a_child_created_just_before_a_restart_is_adopted_not_duplicated():
    # the operator created the child, then died before writing status
    previous = status()
    out = plan(pipeline(), previous, observe([child("data", "Running")]))
    assert out.create == []
    assert (out.status.stages["data"].attempts, out.status.stages["data"].phase) == (1, "Running")


def test_planning_twice_on_the_same_state_changes_nothing():
    first = plan(pipeline(), None, observe())
    second = plan(pipeline(), first.status, observe([child("data", "Pending")]))
    third = plan(pipeline(), second.status, observe([child("data", "Pending")]))
    assert second.create == third.create == []
    assert third.status == second.status
    assert third.events == []


def test_a_spec_change_does_not_rerun_a_finished_stage():
    previous = status(data=DONE, tok={"phase": "Running", "attempts": 1})
    changed = job({**DATA, "data": {"sources": [{"type": "stdlib", "include": "*.txt"}]}}, TOKENIZER, PRETRAIN, EVAL)
    out = plan(changed, previous, observe([child("tok", "Running")]))
    assert out.create == [] and out.delete == []
    assert out.status.stages["data"].phase == "Succeeded"


def test_rerun_resets_the_stage_and_everything_after_it_and_creates_nothing_yet():
    previous = status(data=DONE, tok=DONE, pretrain=DONE, eval=DONE)
    previous.phase = "Succeeded"
    out = plan(pipeline(), previous, observe([child("pretrain", "Succeeded"), child("eval", "Succeeded")],
                                             rerun=("pretrain",)))  # fmt: skip
    assert out.clear_rerun
    assert sorted(out.delete) == ["eval", "pretrain"]
    assert out.create == []
    assert {n: s.phase for n, s in out.status.stages.items()} == {
        "data": "Succeeded", "tok": "Succeeded", "pretrain": "Pending", "eval": "Pending"
    }  # fmt: skip
    assert out.status.stages["pretrain"].attempts == 0
    assert [e.reason for e in out.events] == ["Rerun"]
    # the next pass (annotation cleared, children gone) starts pretrain again
    assert plan(pipeline(), out.status, observe()).create == ["pretrain"]


def test_rerun_of_an_unknown_stage_is_reported():
    out = plan(pipeline(), status(data=DONE), observe(rerun=("pretrian",)))
    assert out.clear_rerun
    assert [e.reason for e in out.events] == ["RerunIgnored"]
    assert "pretrian" in out.events[0].message


def test_a_stage_removed_from_the_spec_loses_its_child_and_status():
    previous = status(data=DONE, tok=DONE, pretrain=DONE, eval={"phase": "Running", "attempts": 1})
    out = plan(job(DATA, TOKENIZER, PRETRAIN), previous, observe([child("eval", "Running")]))
    assert out.delete == ["eval"]
    assert "eval" not in out.status.stages
    assert out.status.phase == "Succeeded"


def test_condition_times_move_only_when_the_condition_changes():
    first = plan(pipeline(), None, observe())
    later = plan(pipeline(), first.status, Observed(children={"data": child("data", "Running")}, now="later",
                                                    workload_refs=REFS))  # fmt: skip
    assert [c.last_transition_time for c in later.status.conditions] == [NOW] * 5


def test_a_succeeded_stage_records_its_committed_version():
    previous = status(data={"phase": "Running", "attempts": 1})
    artifacts = {"data": StageArtifacts(version="20250601T1200-ab")}
    out = plan(pipeline(), previous, observe([child("data", "Succeeded")], artifacts=artifacts))
    assert out.status.stages["data"].version == "20250601T1200-ab"


def test_observed_generation_is_recorded_in_camel_case_with_each_condition():
    status = plan(pipeline(), None, observe(generation=7)).status
    assert status.observed_generation == 7
    written = status.model_dump(mode="json", by_alias=True)
    assert written["observedGeneration"] == 7 and "observed_generation" not in written
    assert written["currentStage"] == "data"
    assert {c["observedGeneration"] for c in written["conditions"]} == {7}


def test_ready_is_unknown_on_the_way_true_on_success_and_false_with_a_reason_on_failure():
    def ready(out):
        return out.status.condition("Ready")

    started = plan(pipeline(), None, observe())
    assert (ready(started).status, ready(started).reason) == ("Unknown", "Running")
    previous = status(data={"phase": "Running", "attempts": 1})
    failed = plan(pipeline(), previous, observe([child("data", "Failed", message="OOMKilled")]))
    assert (ready(failed).status, ready(failed).reason) == ("False", "StageFailed")
    assert "OOMKilled" in ready(failed).message
    previous = status(data=DONE, tok=DONE, pretrain=DONE, eval={"phase": "Running", "attempts": 1})
    done = plan(pipeline(), previous, observe([child("eval", "Succeeded")]))
    assert (ready(done).status, ready(done).reason) == ("True", "Succeeded")
    assert ready(done).message == "all 4 stages succeeded"


def test_a_status_written_in_snake_case_by_an_older_operator_is_still_read():
    old = JobStatus.model_validate({"phase": "Running", "current_stage": "data", "observed_generation": 3})
    assert (old.current_stage, old.observed_generation) == ("data", 3)
