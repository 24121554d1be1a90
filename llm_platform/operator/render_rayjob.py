"""Stages that use Ray -> a KubeRay RayJob (ray.io/v1): a Ray cluster made for the stage and gone after it.

`data` / `tokenizer` / `eval` with several workers (or `data.engine: ray`) run their `llmp stage run` as the Ray job's
entrypoint, on the head, fanning work out to the worker group. Training stages with `launcher: ray` get one worker
pod per node holding that node's GPUs; the same entrypoint on the head starts Ray Train's `TorchTrainer` there
(`trainer.stages.ray_train`), one training worker per GPU on the worker pods, and the head offers Ray no CPUs so
that no training worker lands beside the driver. KubeRay supplies `ray start`, so containers set no command.
KubeRay's submitter (the pod that runs `ray job submit`) gets our own template: KubeRay's default one would carry
no securityContext and fail a namespace that enforces Pod Security "restricted"; KubeRay fills in its command.
"""

from __future__ import annotations

from typing import Any

from llm_platform.api import Stage

from .pods import (
    child_metadata,
    container,
    llmp_command_line,
    pod_spec,
    pod_template,
    resource_requirements,
    scratch_volumes,
    starts_suspended,
    volumes,
)
from .render_context import RenderContext
from .render_pytorchjob import training_shape

API_VERSION = "ray.io/v1"
KIND = "RayJob"
WORKER_GROUP = "workers"
SUBMITTER = "ray-job-submitter"
# what KubeRay gives its default submitter: `ray job submit` only follows the job's logs
SUBMITTER_RESOURCES = {"requests": {"cpu": "500m", "memory": "200Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}


def ray_shape(stage: Stage) -> tuple[int, int]:
    """(worker pods, GPUs per worker pod)."""
    if stage.trains:
        return training_shape(stage)
    return stage.resources.workers, stage.resources.gpus


def render_rayjob(ctx: RenderContext) -> dict[str, Any]:
    job, stage, options = ctx.job, ctx.stage, ctx.options
    workers, gpus = ray_shape(stage)
    image = ctx.image
    vols, mounts = volumes(ctx, shm=True)
    cpu, memory = stage.resources.cpu, stage.resources.memory

    def template(main: dict[str, Any], pod_volumes: list[dict[str, Any]], restart: str | None = None) -> dict[str, Any]:
        return pod_template(ctx, pod_spec(ctx, [main], pod_volumes, restart))

    # The head runs the driver (the stage command) and Ray's control plane; GPUs go to the workers. Both read and
    # write the store; the submitter only talks to the head's dashboard, so it gets no storage credentials.
    head = container("ray-head", image, job, resource_requirements(cpu, memory, 0), mounts)
    worker = container("ray-worker", image, job, resource_requirements(cpu, memory, gpus), mounts)
    scratch, scratch_mounts = scratch_volumes()
    submitter = container(SUBMITTER, image, job, SUBMITTER_RESOURCES, scratch_mounts, storage=False)

    head_params = {"dashboard-host": "0.0.0.0"}
    if stage.trains:  # the head runs the driver only; Ray Train's workers go to the worker pods
        head_params["num-cpus"] = "0"
    cluster: dict[str, Any] = {
        "rayVersion": options.ray_version,
        "headGroupSpec": {"rayStartParams": head_params, "template": template(head, vols)},
        "workerGroupSpecs": [
            {
                "groupName": WORKER_GROUP,
                "replicas": workers,
                "minReplicas": workers,
                "maxReplicas": workers,
                "rayStartParams": {},
                "template": template(worker, vols),
            }
        ],
    }
    spec: dict[str, Any] = {
        "entrypoint": llmp_command_line(ctx),
        "submissionMode": "K8sJobMode",
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": options.ttl_seconds_after_finished,
        "backoffLimit": 0,
        "suspend": starts_suspended(ctx),
        "submitterPodTemplate": template(submitter, scratch, "Never"),
        "rayClusterSpec": cluster,
    }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": child_metadata(ctx),
        "spec": spec,
    }
