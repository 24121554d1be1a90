"""Serving stages render to a Deployment + Service (+ HPA), with our server or vLLM's."""

from __future__ import annotations

import pytest

from llm_platform.operator.options import RenderError, RenderOptions
from llm_platform.operator.render_context import RenderContext
from llm_platform.operator.render_serve import render_autoscaler, render_deployment, render_service

from .helpers import DATA, PRETRAIN, SERVE, TOKENIZER, child, job


def serving(serve=None, resources=None, name="demo"):
    stage = {**SERVE, "serve": serve or {}, **({"resources": resources} if resources else {})}
    j = job(DATA, TOKENIZER, PRETRAIN, stage, name=name)
    return j, j.spec.stage("serve")


def test_builtin_engine_runs_the_stage_command_and_is_ready_once_healthy():
    j, stage = serving({"replicas": 3, "port": 9000})
    out = render_deployment(RenderContext.of(j, stage))
    assert out["spec"]["replicas"] == 3
    container = out["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:3] == ["llmp", "stage", "run"]
    assert container["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}  # 503 until the weights load
    assert {"name": "LLMP_SERVE_HOST", "value": "0.0.0.0"} in container["env"]


@pytest.mark.parametrize(("engine", "variable"), [("builtin", "LLMP_API_KEY"), ("vllm", "VLLM_API_KEY")])
def test_the_api_key_comes_from_the_named_secret(engine, variable):
    j, stage = serving({"engine": engine, "api_key_secret": "bot-keys"})
    container = render_deployment(RenderContext.of(j, stage))["spec"]["template"]["spec"]["containers"][0]
    assert {"name": variable, "valueFrom": {"secretKeyRef": {"name": "bot-keys", "key": "api-key"}}} in container["env"]


def test_vllm_engine_copies_the_model_in_first_and_serves_it_under_the_job_name():
    j, stage = serving({"engine": "vllm", "max_batch": 64}, {"gpus": 2})
    pod = render_deployment(RenderContext.of(j, stage, RenderOptions(vllm_image="vllm/vllm-openai:test")))["spec"][
        "template"
    ]["spec"]
    (fetch,) = pod["initContainers"]
    assert fetch["command"][:3] == ["python", "-m", "llm_platform.operator.fetch_model"]
    assert fetch["command"][-2:] == ["--dest", "/models/model"]
    server = pod["containers"][0]
    assert server["image"] == "vllm/vllm-openai:test"
    args = server["args"]
    assert args[args.index("--model") + 1] == "/models/model"
    assert args[args.index("--served-model-name") + 1] == "demo"
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert args[args.index("--max-num-seqs") + 1] == "64"


def test_vllm_with_builtin_quantization_is_refused_with_the_fix():
    j, stage = serving({"engine": "vllm", "quantization": "int8"})
    with pytest.raises(RenderError, match="engine: builtin") as refused:
        render_deployment(RenderContext.of(j, stage))
    index = [s.name for s in j.spec.stages].index(stage.name)
    assert refused.value.problem.path == f"spec.stages[{index}].serve.quantization"  # where the webhook points


def test_service_selects_the_stage_pods_on_the_serving_port():
    j, stage = serving({"port": 8080})
    service = render_service(RenderContext.of(j, stage))
    assert service["metadata"]["name"] == child("demo", "serve")
    assert service["spec"]["selector"] == {"llmplatform.dev/job": "demo", "llmplatform.dev/stage": "serve"}
    deployment = render_deployment(RenderContext.of(j, stage))
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["port"] == 8080


def test_service_names_must_start_with_a_letter():
    j, stage = serving(name="7b-chat")
    with pytest.raises(RenderError, match="start with a letter") as refused:
        render_service(RenderContext.of(j, stage))
    assert refused.value.problem.path == "metadata.name"


def test_autoscale_scales_on_requests_waiting_and_starts_at_its_minimum():
    j, stage = serving({"autoscale": {"min_replicas": 2, "max_replicas": 6, "target_waiting_requests": 3}})
    hpa = render_autoscaler(RenderContext.of(j, stage))
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": child("demo", "serve"),
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    (metric,) = hpa["spec"]["metrics"]
    assert metric == {
        "type": "Pods",
        "pods": {
            "metric": {"name": "vllm_num_requests_waiting"},
            "target": {"type": "AverageValue", "averageValue": "3"},
        },
    }
    assert render_deployment(RenderContext.of(j, stage))["spec"]["replicas"] == 2


def test_no_autoscale_no_hpa():
    j, stage = serving()
    assert render_autoscaler(RenderContext.of(j, stage)) is None
