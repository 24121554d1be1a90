"""Which workload each stage becomes, the spec ConfigMap pods run from, and whole-job rendering."""

from __future__ import annotations

import pytest
import yaml

from llm_platform.api import parse_job
from llm_platform.operator.options import AllowList, RenderOptions
from llm_platform.operator.render import render_configmap, render_job, render_problems, to_yaml, workload_kind

from .helpers import CLUSTER_EXAMPLES, DATA, EVAL, PRETRAIN, SERVE, TOKENIZER, child, example, job, job_dict


@pytest.mark.parametrize(
    ("stage", "kind"),
    [
        (DATA, "Job"),
        ({**DATA, "data": {**DATA["data"], "engine": "ray"}}, "RayJob"),
        ({**DATA, "resources": {"workers": 3}}, "RayJob"),
        (TOKENIZER, "Job"),
        (PRETRAIN, "PyTorchJob"),
        ({**PRETRAIN, "train": {"steps": 1, "parallel": {"launcher": "ray"}}}, "RayJob"),
        (EVAL, "Job"),
        (SERVE, "Deployment"),
    ],
)
def test_workload_kind(stage, kind):
    stages = {s["name"]: s for s in (DATA, TOKENIZER, PRETRAIN)}
    stages[stage["name"]] = stage  # replaces the default stage of that name, or adds it
    j = job(*stages.values())
    assert workload_kind(j.spec.stage(stage["name"])) == kind


def test_finetune_without_a_train_section_renders_with_default_parallelism():
    j = parse_job(
        job_dict(
            {"name": "sft", "kind": "finetune", "finetune": {"dataset": {"path": "s3://data/x.jsonl"}}},
            model={"from": "s3://models/base"},
        )
    )
    assert workload_kind(j.spec.stage("sft")) == "PyTorchJob"
    assert [d["kind"] for d in render_job(j)] == ["ConfigMap", "ServiceAccount", "PyTorchJob"]


def test_the_configmap_holds_the_spec_as_written_and_parses_back_to_the_same_job():
    for path in CLUSTER_EXAMPLES:
        original = example(path.name)
        text = render_configmap(original)["data"]["job.yaml"]
        parsed = parse_job(yaml.safe_load(text))
        assert parsed.spec == original.spec, path.name
        assert parsed.metadata.name == original.metadata.name


def test_the_configmap_keeps_unset_defaults_unset():
    # a tokenizer imported with `from` must not gain a default vocab_size, which would make it invalid
    j = parse_job(job_dict(DATA, {**TOKENIZER, "tokenizer": {"from": "s3://tok/llama3"}}))
    spec = yaml.safe_load(render_configmap(j)["data"]["job.yaml"])["spec"]
    assert spec["stages"][1]["tokenizer"] == {"from": "s3://tok/llama3"}


def test_render_job_lists_the_configmap_then_stages_in_run_order():
    kinds = [(d["kind"], d["metadata"]["name"]) for d in render_job(example("pipeline.yaml"))]
    assert kinds[:2] == [("ConfigMap", "llama-pipeline-spec"), ("ServiceAccount", "llama-pipeline-pods-c87a41")]
    names = [name for _, name in kinds[2:]]
    stages = [child("llama-pipeline", stage, "research") for stage in ("data", "tokenizer", "pretrain")]
    assert names.index(stages[0]) < names.index(stages[1]) < names.index(stages[2])


def test_render_one_stage_only():
    docs = render_job(example("pipeline.yaml"), stage="serve")
    assert [d["kind"] for d in docs] == ["ConfigMap", "ServiceAccount", "Service", "Deployment"]


def test_namespace_option_overrides_the_jobs_namespace():
    docs = render_job(example("eval.yaml"), RenderOptions(namespace="other"))
    assert {d["metadata"]["namespace"] for d in docs} == {"other"}


def test_a_job_without_storage_cannot_run_on_a_cluster():
    body = job_dict(DATA)
    del body["spec"]["storage"]
    (problem,) = render_problems(parse_job(body))
    assert problem.loc == ("spec", "storage", "uri") and "storage every pod can reach" in problem.message


def test_local_storage_needs_a_shared_claim_which_is_then_mounted_at_its_path():
    body = job_dict(DATA, storage={"uri": "file:///mnt/llm"})
    assert "local path" in render_problems(parse_job(body))[0].message
    body["metadata"]["annotations"] = {"llmplatform.dev/storage-claim": "shared-rwx"}
    j = parse_job(body)
    assert render_problems(j, RenderOptions(allow=AllowList(claims=("shared-rwx",)))) == []
    pod = render_job(j)[2]["spec"]["template"]["spec"]
    assert {"name": "llmp-storage", "persistentVolumeClaim": {"claimName": "shared-rwx"}} in pod["volumes"]
    assert {"name": "llmp-storage", "mountPath": "/mnt/llm"} in pod["containers"][0]["volumeMounts"]


def test_render_problems_lists_every_stage_that_cannot_run():
    serve_vllm = {**SERVE, "serve": {"engine": "vllm", "quantization": "int4"}}
    serve_int8 = {**SERVE, "name": "serve2", "serve": {"engine": "vllm", "quantization": "int8"}}
    problems = render_problems(job(DATA, TOKENIZER, PRETRAIN, serve_vllm, serve_int8))
    assert len(problems) == 2
    assert "'int4'" in problems[0].message and "'int8'" in problems[1].message


def test_yaml_output_has_no_anchors_and_the_spec_as_a_literal_block():
    text = to_yaml(render_job(example("pretrain.yaml")))
    assert "&id" not in text and "*id" not in text
    assert "job.yaml: |" in text
    assert len(list(yaml.safe_load_all(text))) == 5
