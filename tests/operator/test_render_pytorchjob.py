"""Training stages render to a Kubeflow PyTorchJob running torchrun around `llmp stage run`."""

from __future__ import annotations

import pytest

from llm_platform.operator.naming import name_hash
from llm_platform.operator.options import RenderError, RenderOptions
from llm_platform.operator.render_context import RenderContext
from llm_platform.operator.render_pytorchjob import render_pytorchjob

from .helpers import DATA, PRETRAIN, TOKENIZER, job


def pretrain(parallel=None, resources=None, **meta):
    stage = {**PRETRAIN, "train": {"steps": 100, **({"parallel": parallel} if parallel else {})}}
    if resources:
        stage["resources"] = resources
    j = job(DATA, TOKENIZER, stage)
    j.metadata.labels.update(meta.get("labels", {}))
    j.metadata.annotations.update(meta.get("annotations", {}))
    return j, j.spec.stage("pretrain")


def test_two_nodes_become_one_master_and_one_worker_with_torchrun_over_all_gpus():
    j, stage = pretrain({"strategy": "fsdp", "nodes": 2, "gpus_per_node": 8})
    out = render_pytorchjob(RenderContext.of(j, stage))
    replicas = out["spec"]["pytorchReplicaSpecs"]
    assert {k: v["replicas"] for k, v in replicas.items()} == {"Master": 1, "Worker": 1}
    assert out["spec"]["nprocPerNode"] == "8"
    container = replicas["Master"]["template"]["spec"]["containers"][0]
    assert container["name"] == "pytorch"
    assert container["command"] == [
        "torchrun", "--nnodes=2", "--nproc-per-node=8", "-m", "llm_platform.cli",
        "stage", "run", "--job", "/etc/llmp/job.yaml", "--stage", "pretrain", "--storage", "s3://bucket/team/demo",
    ]  # fmt: skip
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"


def test_one_node_has_only_a_master():
    j, stage = pretrain({"gpus_per_node": 4})
    assert set(render_pytorchjob(RenderContext.of(j, stage))["spec"]["pytorchReplicaSpecs"]) == {"Master"}


def test_cpu_training_runs_one_process_per_node_without_gpus():
    j, stage = pretrain()
    out = render_pytorchjob(RenderContext.of(j, stage))
    container = out["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    assert out["spec"]["nprocPerNode"] == "1"
    assert "--nproc-per-node=1" in container["command"]
    assert "nvidia.com/gpu" not in str(container.get("resources", {}))


def test_failed_pods_are_not_restarted_in_place_and_runs_are_gang_scheduled():
    j, stage = pretrain({"nodes": 4, "gpus_per_node": 8})
    out = render_pytorchjob(RenderContext.of(j, stage, RenderOptions(ttl_seconds_after_finished=600)))
    policy = out["spec"]["runPolicy"]
    assert policy["backoffLimit"] == 0
    assert policy["ttlSecondsAfterFinished"] == 600
    assert policy["schedulingPolicy"]["minAvailable"] == 4
    assert {r["restartPolicy"] for r in out["spec"]["pytorchReplicaSpecs"].values()} == {"Never"}


def test_every_pod_mounts_the_spec_and_shared_memory():
    j, stage = pretrain({"nodes": 2})
    for replica in render_pytorchjob(RenderContext.of(j, stage))["spec"]["pytorchReplicaSpecs"].values():
        spec = replica["template"]["spec"]
        mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        assert mounts == {"/etc/llmp", "/tmp", "/home/llmp", "/dev/shm"}
        assert {"name": "llmp-spec", "configMap": {"name": "demo-spec"}} in spec["volumes"]
        assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in spec["volumes"]


def test_storage_credentials_come_from_the_secret_and_the_endpoint_from_the_spec():
    j, stage = pretrain()
    j.spec.storage.secret_ref = "s3-creds"
    j.spec.storage.endpoint_url = "http://minio:9000"
    container = render_pytorchjob(RenderContext.of(j, stage))["spec"]["pytorchReplicaSpecs"]["Master"]["template"][
        "spec"
    ]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert {"name": "AWS_ENDPOINT_URL", "value": "http://minio:9000"} in container["env"]


def test_kueue_queue_label_makes_the_job_start_suspended_with_the_label():
    j, stage = pretrain(labels={"kueue.x-k8s.io/queue-name": "gpu"})
    out = render_pytorchjob(RenderContext.of(j, stage))
    assert out["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu"
    assert out["spec"]["runPolicy"]["suspend"] is True


def test_suspended_job_renders_suspended_children():
    j, stage = pretrain()
    j.spec.suspend = True
    assert render_pytorchjob(RenderContext.of(j, stage))["spec"]["runPolicy"]["suspend"] is True


def test_scheduling_queue_and_priority_class_annotations():
    j, stage = pretrain(
        annotations={"llmplatform.dev/scheduling-queue": "research", "llmplatform.dev/priority-class": "high"}
    )
    out = render_pytorchjob(RenderContext.of(j, stage))
    assert out["spec"]["runPolicy"]["schedulingPolicy"] == {
        "minAvailable": 1,
        "queue": "research",
        "priorityClass": "high",
    }
    assert out["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["priorityClassName"] == "high"


def test_elastic_nodes_annotation_renders_an_elastic_policy_and_worker_replicas_only():
    j, stage = pretrain({"nodes": 3, "gpus_per_node": 8}, annotations={"llmplatform.dev/elastic-nodes": "2:4"})
    out = render_pytorchjob(RenderContext.of(j, stage))
    assert set(out["spec"]["pytorchReplicaSpecs"]) == {"Worker"}
    assert out["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 3
    assert out["spec"]["elasticPolicy"]["minReplicas"] == 2
    assert out["spec"]["elasticPolicy"]["maxReplicas"] == 4
    assert (
        "--nnodes=2:4" in out["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["command"]
    )


def test_a_garbled_elastic_annotation_is_an_error_naming_the_annotation():
    j, stage = pretrain(annotations={"llmplatform.dev/elastic-nodes": "4-2"})
    with pytest.raises(RenderError, match="elastic-nodes.*MIN:MAX") as refused:
        render_pytorchjob(RenderContext.of(j, stage))
    assert refused.value.problem.path == "metadata.annotations['llmplatform.dev/elastic-nodes']"


def test_owner_reference_labels_and_name_are_deterministic():
    j, stage = pretrain()
    out = render_pytorchjob(RenderContext.of(j, stage, attempt=3, owner_uid="u-1"))
    meta = out["metadata"]
    assert meta["name"] == "demo-pretrain-" + name_hash("team", "demo", "pretrain")
    assert meta["namespace"] == "team"
    assert meta["labels"]["llmplatform.dev/job"] == "demo"
    assert meta["labels"]["llmplatform.dev/stage"] == "pretrain"
    assert meta["labels"]["llmplatform.dev/attempt"] == "3"
    assert meta["ownerReferences"] == [
        {"apiVersion": "llmplatform.dev/v1alpha1", "kind": "LLMJob", "name": "demo", "uid": "u-1",
         "controller": True, "blockOwnerDeletion": True}
    ]  # fmt: skip
    assert render_pytorchjob(RenderContext.of(j, stage, attempt=3, owner_uid="u-1")) == out


def test_stage_image_overrides_the_job_image_which_overrides_the_default():
    j, stage = pretrain()

    def image():
        return render_pytorchjob(RenderContext.of(j, stage, RenderOptions(image="default:1")))["spec"][
            "pytorchReplicaSpecs"
        ]["Master"]["template"]["spec"]["containers"][0]["image"]

    assert image() == "default:1"
    j.spec.image = "job:2"
    assert image() == "job:2"
    stage.image = "stage:3"
    assert image() == "stage:3"
