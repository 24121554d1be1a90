"""Single-pod stages render to a batch/v1 Job."""

from __future__ import annotations

from llm_platform.operator.render_batch import render_batch_job
from llm_platform.operator.render_context import RenderContext

from .helpers import DATA, EVAL, PRETRAIN, TOKENIZER, job


def test_a_single_pod_runs_the_stage_command_once():
    j = job(DATA, TOKENIZER)
    out = render_batch_job(RenderContext.of(j, j.spec.stage("tok")))
    spec = out["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    container = spec["template"]["spec"]["containers"][0]
    assert container["command"] == [
        "llmp", "stage", "run", "--job", "/etc/llmp/job.yaml", "--stage", "tok", "--storage", "s3://bucket/team/demo",
    ]  # fmt: skip


def test_gpu_stages_get_the_gpu_and_shared_memory():
    j = job(DATA, TOKENIZER, PRETRAIN, {**EVAL, "resources": {"gpus": 1}})
    pod = render_batch_job(RenderContext.of(j, j.spec.stage("eval")))["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"}
    assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in pod["volumes"]


def test_cpu_stages_have_no_shared_memory_volume():
    j = job(DATA)
    pod = render_batch_job(RenderContext.of(j, j.spec.stage("data")))["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["llmp-spec", "tmp", "home"]


def test_node_selector_is_passed_to_the_pod():
    j = job({**DATA, "resources": {"node_selector": {"pool": "cpu"}}})
    assert render_batch_job(RenderContext.of(j, j.spec.stage("data")))["spec"]["template"]["spec"]["nodeSelector"] == {
        "pool": "cpu"
    }
