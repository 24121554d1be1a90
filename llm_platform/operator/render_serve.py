"""`serve` stages -> a Deployment + a Service (+ a HorizontalPodAutoscaler with `autoscale`).

`engine: builtin` runs our OpenAI-compatible server through `llmp stage run` like every other stage. `engine: vllm`
runs the vLLM OpenAI image on the model the stage serves, which an init container (our image) copies from the
artifact store into a shared volume first. Both answer `GET /health` with 200 only once the weights are loaded (our
server answers 503 until then, and again if its engine dies): the startup probe waits for it through a long load,
readiness keeps traffic away until then, liveness restarts a server whose engine has stopped. Both export
`vllm:num_requests_waiting`, the autoscaler's metric (through the Prometheus adapter, see docs/serving.md).
"""

from __future__ import annotations

from typing import Any

from llm_platform.api import LLMJob, Stage
from llm_platform.trainer.stages.preflight import stage_loc

from .naming import SPEC_FILE, labels, selector_labels
from .options import RenderError
from .pods import (
    child_metadata,
    container,
    llmp_command,
    pod_spec,
    resource_requirements,
    storage_uri,
    volumes,
)
from .render_context import RenderContext

HEALTH = "/health"
API_KEY_ENTRY = "api-key"
QUEUE_METRIC = "vllm_num_requests_waiting"
"""`vllm:num_requests_waiting` as the Prometheus adapter exposes it to the HPA (custom metric names take no colon)."""
MODEL_VOLUME = "models"
MODEL_DIR = "/models/model"
VLLM_SERVER = ["python3", "-m", "vllm.entrypoints.openai.api_server"]
FETCH_MODEL_RESOURCES = {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}


def desired_replicas(stage: Stage) -> int:
    serve = stage.serve
    return serve.autoscale.min_replicas if serve.autoscale else serve.replicas


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "failureThreshold": failures}


def _api_key_env(secret: str | None, variable: str) -> list[dict[str, Any]]:
    """The API key clients must send, from the Secret's `api-key` entry (never written into the manifest)."""
    if secret is None:
        return []
    return [{"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": API_KEY_ENTRY}}}]


def _vllm_args(job: LLMJob, stage: Stage, gpus: int) -> list[str]:
    serve = stage.serve
    if serve.quantization != "none":
        raise RenderError(
            (*stage_loc(job, stage.name), "serve", "quantization"),
            f"'{serve.quantization}' is done by the builtin engine; vLLM serves the exported checkpoint as it is",
            hint="use engine: builtin, or quantization: none with engine: vllm",
        )
    args = [
        "--host",
        "0.0.0.0",
        "--model",
        MODEL_DIR,
        "--served-model-name",
        job.metadata.name,
        "--port",
        str(serve.port),
        "--max-num-seqs",
        str(serve.max_batch),
    ]
    if gpus > 1:
        args += ["--tensor-parallel-size", str(gpus)]
    return args


def _fetch_model_container(ctx: RenderContext, mounts: list) -> dict[str, Any]:
    command = [
        "python",
        "-m",
        "llm_platform.operator.fetch_model",
        "--job",
        SPEC_FILE,
        "--stage",
        ctx.stage.name,
        "--storage",
        storage_uri(ctx.job, ctx.jopts),
        "--dest",
        MODEL_DIR,
    ]
    return container("fetch-model", ctx.image, ctx.job, FETCH_MODEL_RESOURCES, mounts, command=command)


def render_deployment(ctx: RenderContext, replicas: int | None = None) -> dict[str, Any]:
    job, stage, options = ctx.job, ctx.stage, ctx.options
    serve, res = stage.serve, stage.resources
    vols, mounts = volumes(ctx, shm=res.gpus > 0)
    ports = [{"name": "http", "containerPort": serve.port, "protocol": "TCP"}]
    resources = resource_requirements(res.cpu, res.memory, res.gpus)
    init_containers: list[dict[str, Any]] = []
    if serve.engine == "vllm":
        model_mount = {"name": MODEL_VOLUME, "mountPath": "/models"}
        vols = [*vols, {"name": MODEL_VOLUME, "emptyDir": {}}]
        init_containers.append(_fetch_model_container(ctx, [*mounts, model_mount]))
        server = container(
            "server",
            options.vllm_image,
            job,
            resources,
            [*mounts, model_mount],
            command=VLLM_SERVER,
            ports=ports,
            storage=False,  # it serves what fetch-model copied; the storage Secret stays out of the server
        )
        server["args"] = _vllm_args(job, stage, res.gpus)
        server["env"] = [*server["env"], *_api_key_env(serve.api_key_secret, "VLLM_API_KEY")]
    else:
        server = container(
            "server",
            ctx.image,
            job,
            resources,
            mounts,
            command=llmp_command(ctx),
            ports=ports,
        )
        listen = [{"name": "LLMP_SERVE_HOST", "value": "0.0.0.0"}]  # the pod IP, not only loopback
        server["env"] = [*server["env"], *listen, *_api_key_env(serve.api_key_secret, "LLMP_API_KEY")]
    server["startupProbe"] = _probe(HEALTH, 10, 90)  # loading a large model takes minutes
    server["readinessProbe"] = _probe(HEALTH, 10, 3)
    server["livenessProbe"] = _probe(HEALTH, 20, 3)
    spec = pod_spec(ctx, [server], vols, None)
    if init_containers:
        spec = {"initContainers": init_containers, **spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(ctx),
        "spec": {
            "replicas": desired_replicas(stage) if replicas is None else replicas,
            "selector": {"matchLabels": selector_labels(job.metadata.name, stage.name)},
            "template": {"metadata": {"labels": labels(job.metadata.name, stage.name)}, "spec": spec},
        },
    }


def render_service(ctx: RenderContext) -> dict[str, Any]:
    job, stage, name = ctx.job, ctx.stage, ctx.child_name
    if not name[0].isalpha():
        raise RenderError(
            ("metadata", "name"),
            f"a Service name must start with a letter, and '{name}' (job-stage) does not",
            hint="rename the job to start with a letter",
        )
    meta = _companion_metadata(ctx)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(job.metadata.name, stage.name),
            "ports": [{"name": "http", "port": stage.serve.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _companion_metadata(ctx: RenderContext) -> dict[str, Any]:
    """Metadata of an object that goes with the serving Deployment (its Service, its autoscaler): the Deployment's
    name and owner, and the stage's labels without an attempt (it is not re-created per attempt)."""
    meta = child_metadata(ctx)
    meta["labels"] = labels(ctx.job.metadata.name, ctx.stage.name)
    return meta


def render_autoscaler(ctx: RenderContext) -> dict[str, Any] | None:
    """An autoscaling/v2 HPA on queue length (requests waiting per pod), or None without `serve.autoscale`.

    CPU says little about an inference server (its batch saturates the accelerator first); requests waiting say
    exactly when a replica is behind. The metric reaches the HPA as a Pods metric through the Prometheus adapter."""
    autoscale = ctx.stage.serve.autoscale
    if autoscale is None:
        return None
    name = ctx.child_name
    meta = _companion_metadata(ctx)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": autoscale.min_replicas,
            "maxReplicas": autoscale.max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": QUEUE_METRIC},
                        "target": {"type": "AverageValue", "averageValue": str(autoscale.target_waiting_requests)},
                    },
                }
            ],
        },
    }
