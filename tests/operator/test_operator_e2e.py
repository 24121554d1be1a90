"""The operator end to end against an emulated Kubernetes API (kmock, a real HTTP server): kopf, our handlers and our
client as deployed; the test plays the user (kubectl) and the engines (training operator, KubeRay, Job controller)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from llm_platform.api import parse_job
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.stages import make_context

from .cluster import stays, wait_for
from .helpers import DATA, PRETRAIN, SERVE_VLLM, TOKENIZER, child, job_dict


def pipeline(**spec):
    return job_dict(DATA, TOKENIZER, PRETRAIN, SERVE_VLLM, **spec)


def finish_first_stages(cluster, job="demo"):
    wait_for(lambda: cluster.child("Job", child(job, "data")), what="the data Job")
    cluster.finish("Job", child(job, "data"), "Succeeded")
    wait_for(lambda: cluster.child("Job", child(job, "tok")), what="the tokenizer Job")
    cluster.finish("Job", child(job, "tok"), "Succeeded")
    return wait_for(lambda: cluster.child("PyTorchJob", child(job, "pretrain")), what="the PyTorchJob")


def test_a_pipeline_runs_stage_by_stage_to_success(cluster):
    reconciler = cluster.reconciler()
    cluster.start_operator(reconciler)
    cluster.apply(pipeline())

    wait_for(lambda: cluster.child("Job", child("demo", "data")), what="the data Job")
    assert cluster.child("Job", child("demo", "tok")) is None
    assert "kind: LLMJob" in cluster.kube.get("v1", "ConfigMap", "team", "demo-spec")["data"]["job.yaml"]
    wait_for(lambda: cluster.phase("demo") == "Running", what="phase Running")

    cluster.finish("Job", child("demo", "data"), "Succeeded")
    wait_for(lambda: cluster.child("Job", child("demo", "tok")), what="the tokenizer Job")
    cluster.finish("Job", child("demo", "tok"), "Succeeded")
    pytorchjob = wait_for(lambda: cluster.child("PyTorchJob", child("demo", "pretrain")), what="the PyTorchJob")
    assert pytorchjob["metadata"]["ownerReferences"][0]["uid"] == cluster.job("demo")["metadata"]["uid"]
    cluster.run_child("PyTorchJob", child("demo", "pretrain"))
    wait_for(lambda: cluster.stage("demo", "pretrain").get("phase") == "Running", what="pretrain Running")
    assert cluster.job("demo")["status"]["currentStage"] == "pretrain"

    cluster.finish("PyTorchJob", child("demo", "pretrain"), "Succeeded")
    wait_for(lambda: cluster.child("Deployment", child("demo", "serve")), what="the serving Deployment")
    assert cluster.kube.get("v1", "Service", "team", child("demo", "serve")) is not None
    cluster.finish("Deployment", child("demo", "serve"), "Succeeded")

    wait_for(lambda: cluster.phase("demo") == "Succeeded", what="phase Succeeded")
    status = cluster.job("demo")["status"]
    assert {n: s["phase"] for n, s in status["stages"].items()} == dict.fromkeys(
        ["data", "tok", "pretrain", "serve"], "Succeeded"
    )
    assert status["stages"]["pretrain"]["child"] == "PyTorchJob/" + child("demo", "pretrain")
    assert status["stages"]["pretrain"]["started"] and status["stages"]["pretrain"]["finished"]
    assert next(c for c in status["conditions"] if c["type"] == "Succeeded")["status"] == "True"
    # events follow the status write that they describe, so they may land a moment after the phase
    events = wait_for(
        lambda: (e := cluster.events()).count("StageSucceeded") == 4 and "Succeeded" in e and e, what="the events"
    )
    assert events.count("StageStarted") == 4
    metric = reconciler.metrics.registry.get_sample_value
    wait_for(lambda: metric("llmp_operator_jobs", {"phase": "Succeeded"}) == 1, what="the Succeeded gauge")
    assert metric("llmp_operator_jobs", {"phase": "Running"}) == 0
    assert metric("llmp_operator_children_created_total", {"kind": "PyTorchJob"}) == 1
    assert metric("llmp_operator_reconciles_total", {"result": "ok"}) > 4


def _checkpoint(body, step: int) -> str:
    """Commit a checkpoint where the training helper would, for the stage's current fingerprint."""
    job = parse_job(body)
    store = ArtifactStore.open(job.spec.storage.uri)
    with tempfile.TemporaryDirectory() as tmp:
        key = f"pretrain/checkpoints/{make_context(job, 'pretrain', store, Path(tmp)).fingerprint()}"
        (Path(tmp) / "train_state.json").write_text(f'{{"step": {step}}}')
        store.commit(f"{key}/step_{step:08d}/node_0", Path(tmp), {"step": step, "node": 0})
    store.write_json(f"{key}/latest", {"step": step, "nodes": 1})
    return f"{store.uri}/{key}/step_{step:08d}"


def test_failed_training_is_retried_from_its_checkpoint_then_given_up(cluster, tmp_path):
    body = pipeline(max_retries=1, storage={"uri": f"file://{tmp_path}/store"})
    body["metadata"]["annotations"] = {"llmplatform.dev/storage-claim": "shared"}
    cluster.start_operator(cluster.reconciler(read_artifacts=True))
    cluster.apply(body)
    finish_first_stages(cluster)
    cluster.run_child("PyTorchJob", child("demo", "pretrain"))
    checkpoint = _checkpoint(body, 300)
    wait_for(lambda: cluster.stage("demo", "pretrain").get("checkpoint") == checkpoint, what="the checkpoint")
    assert cluster.stage("demo", "pretrain")["step"] == 300

    cluster.finish("PyTorchJob", child("demo", "pretrain"), "Failed", "NCCL watchdog timeout")

    def second_attempt():
        found = cluster.child("PyTorchJob", child("demo", "pretrain"))
        return found if found and found["metadata"]["labels"]["llmplatform.dev/attempt"] == "2" else None

    retry = wait_for(second_attempt, what="attempt 2")
    assert "status" not in retry  # a fresh job, not the failed one
    # the status that says so is written just after the child is created
    expected = (
        f"creating PyTorchJob/{child('demo', 'pretrain')} (attempt 2 of 2, resuming from checkpoint {checkpoint})"
    )
    stage = wait_for(lambda: (s := cluster.stage("demo", "pretrain")).get("message") == expected and s, what=expected)
    assert stage["attempts"] == 2
    (retrying,) = wait_for(lambda: cluster.event_messages("StageRetrying"), what="the StageRetrying event")
    assert retrying == (
        f"stage pretrain: attempt 1 failed: NCCL watchdog timeout; retrying from checkpoint {checkpoint} "
        "(attempt 2 of 2)"
    )

    cluster.finish("PyTorchJob", child("demo", "pretrain"), "Failed", "NCCL watchdog timeout")
    wait_for(lambda: cluster.phase("demo") == "Failed", what="phase Failed")
    stage = cluster.stage("demo", "pretrain")
    assert (stage["phase"], stage["attempts"]) == ("Failed", 2)
    assert cluster.stage("demo", "serve")["phase"] == "Skipped"
    assert stays(lambda: cluster.child("PyTorchJob", child("demo", "pretrain")) is not None)  # kept for its logs
    assert cluster.child("Deployment", child("demo", "serve")) is None
    assert cluster.creations_of(child("demo", "pretrain")) == 2


def test_suspend_pauses_children_and_holds_back_stages_until_resumed(cluster):
    cluster.start_operator()
    cluster.apply(pipeline())
    wait_for(lambda: cluster.child("Job", child("demo", "data")), what="the data Job")
    cluster.run_child("Job", child("demo", "data"))

    cluster.patch_job("demo", {"spec": {"suspend": True}})
    wait_for(lambda: cluster.child("Job", child("demo", "data"))["spec"]["suspend"] is True, what="the Job suspended")
    wait_for(lambda: cluster.phase("demo") == "Suspended", what="phase Suspended")
    cluster.finish("Job", child("demo", "data"), "Succeeded")  # finished just as it was being paused
    wait_for(lambda: cluster.stage("demo", "data").get("phase") == "Succeeded", what="data Succeeded")
    assert stays(lambda: cluster.child("Job", child("demo", "tok")) is None)

    cluster.patch_job("demo", {"spec": {"suspend": False}})
    wait_for(lambda: cluster.child("Job", child("demo", "tok")), what="the tokenizer Job after resume")
    assert cluster.child("Job", child("demo", "tok"))["spec"]["suspend"] is False
    wait_for(lambda: cluster.phase("demo") == "Running", what="phase Running")
    wait_for(lambda: {"Suspended", "Resumed"} <= set(cluster.events()), what="the Suspended and Resumed events")


def test_delete_waits_for_children_then_releases_the_finalizer(cluster):
    cluster.start_operator()
    cluster.apply(pipeline())
    wait_for(lambda: cluster.child("Job", child("demo", "data")), what="the data Job")
    assert "llmplatform.dev/finalizer" in cluster.job("demo")["metadata"]["finalizers"]
    # a child that takes its time to go (its own finalizer, as KubeRay puts on RayJobs)
    cluster.kube.patch(
        "batch/v1", "Job", "team", child("demo", "data"), {"metadata": {"finalizers": ["engine/cleanup"]}}
    )

    cluster.delete_job("demo")
    wait_for(
        lambda: cluster.child("Job", child("demo", "data"))["metadata"].get("deletionTimestamp"), what="child deletion"
    )
    assert stays(lambda: cluster.job("demo") is not None)  # held by its finalizer while the child terminates

    cluster.kube.patch("batch/v1", "Job", "team", child("demo", "data"), {"metadata": {"finalizers": None}})
    wait_for(lambda: cluster.job("demo") is None, what="the LLMJob to be gone")
    assert cluster.kube.get("v1", "ConfigMap", "team", "demo-spec") is None
    assert cluster.child("Job", child("demo", "tok")) is None


def _store_with_artifacts(root: Path) -> ArtifactStore:
    store = ArtifactStore.open(f"file://{root}")
    with store.writer("data") as out:
        (out / "corpus.txt").write_text("text")
    with store.writer("other-job-stage") as out:
        (out / "x").write_text("not ours")
    return store


def test_cleanup_delete_removes_the_jobs_artifacts_and_keep_keeps_them(cluster, tmp_path):
    cluster.start_operator()
    stores = {}
    for name, cleanup in (("drop", "delete"), ("keep", "keep")):
        stores[name] = _store_with_artifacts(tmp_path / name)
        body = job_dict(DATA, name=name, cleanup=cleanup, storage={"uri": f"file://{tmp_path / name}"})
        body["metadata"]["annotations"] = {"llmplatform.dev/storage-claim": "shared"}
        cluster.apply(body)
    for name in stores:
        wait_for(lambda name=name: cluster.child("Job", child(name, "data")), what=f"{name}'s Job")
        cluster.delete_job(name)
    for name in stores:
        wait_for(lambda name=name: cluster.job(name) is None, what=f"{name} deleted")
    assert not stores["drop"].exists("data")
    assert stores["drop"].exists("other-job-stage")  # only the job's own stages are removed
    assert stores["keep"].exists("data")


def test_an_operator_restarted_mid_flight_continues_without_duplicates(cluster):
    first = cluster.start_operator()
    cluster.apply(pipeline())
    wait_for(lambda: cluster.child("Job", child("demo", "data")), what="the data Job")
    first.stop()

    # while no operator runs, the stage finishes
    cluster.finish("Job", child("demo", "data"), "Succeeded")
    assert stays(lambda: cluster.child("Job", child("demo", "tok")) is None, seconds=0.5)

    cluster.start_operator()
    wait_for(lambda: cluster.child("Job", child("demo", "tok")), what="the tokenizer Job after the restart")
    cluster.finish("Job", child("demo", "tok"), "Succeeded")
    wait_for(lambda: cluster.child("PyTorchJob", child("demo", "pretrain")), what="the PyTorchJob")
    wait_for(lambda: cluster.stage("demo", "pretrain").get("attempts") == 1, what="the status of attempt 1")
    assert stays(lambda: cluster.stage("demo", "pretrain").get("attempts") == 1, seconds=1.5)
    assert [
        cluster.creations_of(n)
        for n in (child("demo", "data"), child("demo", "tok"), child("demo", "pretrain"), "demo-spec")
    ] == [1, 1, 1, 1]
    assert cluster.stage("demo", "data")["phase"] == "Succeeded"


def test_an_invalid_spec_fails_the_job_with_the_validation_message(cluster):
    cluster.start_operator()
    body = pipeline()
    body["spec"]["stages"][2]["train"]["lr"] = 5  # must be < 1
    cluster.apply(body)
    wait_for(lambda: cluster.phase("demo") == "Failed", what="phase Failed")
    message = cluster.job("demo")["status"]["message"]
    assert "spec.stages[2].train.lr: Input should be less than 1 (got 5)" in message
    wait_for(lambda: "InvalidSpec" in cluster.events(), what="the InvalidSpec event")
    assert cluster.child("Job", child("demo", "data")) is None

    cluster.patch_job("demo", {"spec": {"stages": pipeline()["spec"]["stages"]}})  # fixed
    wait_for(lambda: cluster.child("Job", child("demo", "data")), what="the data Job once the spec is fixed")
    wait_for(lambda: cluster.phase("demo") == "Running", what="phase Running")


def test_the_rerun_annotation_runs_a_finished_stage_and_its_dependents_again(cluster):
    cluster.start_operator()
    cluster.apply(job_dict(DATA, TOKENIZER))
    wait_for(lambda: cluster.child("Job", child("demo", "data")), what="the data Job")
    cluster.finish("Job", child("demo", "data"), "Succeeded")
    wait_for(lambda: cluster.child("Job", child("demo", "tok")), what="the tokenizer Job")
    cluster.finish("Job", child("demo", "tok"), "Succeeded")
    wait_for(lambda: cluster.phase("demo") == "Succeeded", what="phase Succeeded")
    # a spec change alone does not re-run a finished stage
    cluster.patch_job("demo", {"spec": {"stages": [DATA, {**TOKENIZER, "tokenizer": {"vocab_size": 4096}}]}})
    assert stays(lambda: cluster.phase("demo") == "Succeeded" and cluster.creations_of(child("demo", "tok")) == 1)

    cluster.patch_job("demo", {"metadata": {"annotations": {"llmplatform.dev/rerun": "tok"}}})
    wait_for(lambda: cluster.creations_of(child("demo", "tok")) == 2, what="the tokenizer Job re-created")
    wait_for(
        lambda: "llmplatform.dev/rerun" not in (cluster.job("demo")["metadata"].get("annotations") or {}),
        what="the annotation cleared",
    )
    assert cluster.creations_of(child("demo", "data")) == 1
    wait_for(lambda: cluster.stage("demo", "tok").get("phase") in ("Pending", "Running"), what="tok restarted")
    cluster.finish("Job", child("demo", "tok"), "Succeeded")
    wait_for(lambda: cluster.phase("demo") == "Succeeded", what="phase Succeeded again")


def test_objects_merely_labelled_with_the_job_are_neither_followed_nor_deleted(cluster):
    # e.g. the submitter Job KubeRay creates for a RayJob, or a leftover of a deleted job of the same name
    labels = {"llmplatform.dev/job": "demo", "llmplatform.dev/stage": "data", "llmplatform.dev/attempt": "5"}
    meta = {"name": "stranger", "namespace": "team", "labels": labels}
    cluster.kube.create({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {}})
    cluster.finish("Job", "stranger", "Failed", "not ours")
    cluster.start_operator()
    cluster.apply(job_dict(DATA))
    wait_for(lambda: cluster.child("Job", child("demo", "data")), what="the data Job")
    cluster.finish("Job", child("demo", "data"), "Succeeded")
    wait_for(lambda: cluster.phase("demo") == "Succeeded", what="phase Succeeded")
    assert cluster.stage("demo", "data")["child"] == "Job/" + child("demo", "data")
    cluster.delete_job("demo")
    wait_for(lambda: cluster.job("demo") is None, what="deletion")
    assert cluster.child("Job", "stranger") is not None
