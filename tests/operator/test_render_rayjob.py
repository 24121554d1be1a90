"""Ray stages render to a KubeRay RayJob whose entrypoint is `llmp stage run`."""

from __future__ import annotations

import shlex

from llm_platform.operator.options import RenderOptions
from llm_platform.operator.render_context import RenderContext
from llm_platform.operator.render_rayjob import render_rayjob

from .helpers import DATA, PRETRAIN, TOKENIZER, job


def ray_data(workers=4, gpus=0):
    stage = {
        **DATA,
        "data": {**DATA["data"], "engine": "ray"},
        "resources": {"workers": workers, "gpus": gpus, "cpu": "8", "memory": "32Gi"},
    }
    j = job(stage)
    return j, j.spec.stage("data")


def test_entrypoint_is_the_stage_command_on_the_shared_storage():
    j, stage = ray_data()
    spec = render_rayjob(RenderContext.of(j, stage))["spec"]
    assert shlex.split(spec["entrypoint"]) == [
        "llmp", "stage", "run", "--job", "/etc/llmp/job.yaml", "--stage", "data", "--storage", "s3://bucket/team/demo",
    ]  # fmt: skip


def test_the_cluster_lives_only_as_long_as_the_job():
    j, stage = ray_data()
    spec = render_rayjob(RenderContext.of(j, stage, RenderOptions(ttl_seconds_after_finished=120)))["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] == 120
    assert spec["suspend"] is False
    assert spec["backoffLimit"] == 0


def test_workers_form_one_fixed_size_group_and_gpus_go_to_workers_only():
    j, stage = ray_data(workers=3, gpus=2)
    cluster = render_rayjob(RenderContext.of(j, stage))["spec"]["rayClusterSpec"]
    (group,) = cluster["workerGroupSpecs"]
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (3, 3, 3)
    worker = group["template"]["spec"]["containers"][0]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert "nvidia.com/gpu" not in str(head["resources"])
    assert head["resources"]["requests"] == {"cpu": "8", "memory": "32Gi"}


def test_kuberay_starts_ray_itself_so_containers_set_no_command():
    j, stage = ray_data()
    cluster = render_rayjob(RenderContext.of(j, stage))["spec"]["rayClusterSpec"]
    templates = [cluster["headGroupSpec"]["template"], cluster["workerGroupSpecs"][0]["template"]]
    assert all("command" not in t["spec"]["containers"][0] for t in templates)


def test_head_and_workers_mount_the_spec():
    j, stage = ray_data()
    cluster = render_rayjob(RenderContext.of(j, stage))["spec"]["rayClusterSpec"]
    for template in (cluster["headGroupSpec"]["template"], cluster["workerGroupSpecs"][0]["template"]):
        assert {"name": "llmp-spec", "mountPath": "/etc/llmp", "readOnly": True} in template["spec"]["containers"][0][
            "volumeMounts"
        ]


def test_ray_train_launcher_puts_one_worker_per_node_with_its_gpus():
    stage = {**PRETRAIN, "train": {"steps": 10, "parallel": {"nodes": 4, "gpus_per_node": 8, "launcher": "ray"}}}
    j = job(DATA, TOKENIZER, stage)
    group = render_rayjob(RenderContext.of(j, j.spec.stage("pretrain")))["spec"]["rayClusterSpec"]["workerGroupSpecs"][
        0
    ]
    assert group["replicas"] == 4
    assert group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"


def test_ray_train_entrypoint_runs_the_stage_whose_launcher_is_ray_and_the_head_trains_nothing():
    stage = {**PRETRAIN, "train": {"steps": 10, "parallel": {"nodes": 2, "gpus_per_node": 8, "launcher": "ray"}}}
    j = job(DATA, TOKENIZER, stage)
    spec = render_rayjob(RenderContext.of(j, j.spec.stage("pretrain")))["spec"]
    # the stage command on the head: its runner for `launcher: ray` is Ray Train's TorchTrainer (stages.ray_train)
    assert shlex.split(spec["entrypoint"])[:6] == ["llmp", "stage", "run", "--job", "/etc/llmp/job.yaml", "--stage"]
    assert shlex.split(spec["entrypoint"])[6] == "pretrain"
    assert j.spec.stage("pretrain").train.parallel.launcher == "ray"
    assert spec["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    data_head = render_rayjob(RenderContext.of(*ray_data()))["spec"]["rayClusterSpec"]["headGroupSpec"]
    assert "num-cpus" not in data_head["rayStartParams"]  # a data stage's head takes part in the work


def test_ray_version_comes_from_the_options():
    j, stage = ray_data()
    assert (
        render_rayjob(RenderContext.of(j, stage, RenderOptions(ray_version="2.9.3")))["spec"]["rayClusterSpec"][
            "rayVersion"
        ]
        == "2.9.3"
    )
