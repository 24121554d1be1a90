"""Stages that use Ray -> a KubeRay RayJob (ray.io/v1): a Ray cluster made for the stage and gone after it.

`data` / `tokenizer` / `eval` with several workers (or `data.engine: ray`) run their `llmp stage run` as the Ray job's
entrypoint, on the head, fanning work out to the worker group. Training stages with `launcher: ray` get one worker
per node holding that node's GPUs, for Ray Train. KubeRay supplies `ray start`, so containers set no command.
"""

from __future__ import annotations

from typing import Any

from llm_platform.api import LLMJob, Stage

from .naming import child_name
from .options import RenderOptions, job_options, namespace_of
from .pods import (
    child_metadata,
    container,
    image_of,
    llmp_command_line,
    pod_spec,
    pod_template,
    resource_requirements,
    starts_suspended,
    volumes,
)
from .render_pytorchjob import training_shape

API_VERSION = "ray.io/v1"
KIND = "RayJob"
WORKER_GROUP = "workers"


def ray_shape(stage: Stage) -> tuple[int, int]:
    """(worker pods, GPUs per worker pod)."""
    if stage.trains:
        return training_shape(stage)
    return stage.resources.workers, stage.resources.gpus


def render_rayjob(
    job: LLMJob,
    stage: Stage,
    options: RenderOptions | None = None,
    *,
    attempt: int = 1,
    owner_uid: str | None = None,
) -> dict[str, Any]:
    options = options or RenderOptions()
    jopts = job_options(job)
    workers, gpus = ray_shape(stage)
    image = image_of(job, stage, options)
    vols, mounts = volumes(job, jopts, shm=True)
    cpu, memory = stage.resources.cpu, stage.resources.memory

    # The head runs the driver (the stage command) and Ray's control plane; GPUs go to the workers.
    head = container("ray-head", image, job, jopts, resource_requirements(cpu, memory, 0), mounts)
    worker = container("ray-worker", image, job, jopts, resource_requirements(cpu, memory, gpus), mounts)
    head_template = pod_template(job.metadata.name, stage, attempt, pod_spec(stage, jopts, [head], vols, None))
    worker_template = pod_template(job.metadata.name, stage, attempt, pod_spec(stage, jopts, [worker], vols, None))

    cluster: dict[str, Any] = {
        "rayVersion": options.ray_version,
        "headGroupSpec": {"rayStartParams": {"dashboard-host": "0.0.0.0"}, "template": head_template},
        "workerGroupSpecs": [
            {
                "groupName": WORKER_GROUP,
                "replicas": workers,
                "minReplicas": workers,
                "maxReplicas": workers,
                "rayStartParams": {},
                "template": worker_template,
            }
        ],
    }
    spec: dict[str, Any] = {
        "entrypoint": llmp_command_line(job, stage, jopts),
        "submissionMode": "K8sJobMode",
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": options.ttl_seconds_after_finished,
        "backoffLimit": 0,
        "suspend": starts_suspended(job, jopts),
        "rayClusterSpec": cluster,
    }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": child_metadata(
            job, stage, namespace_of(job, options), attempt, jopts, owner_uid, child_name(job.metadata.name, stage.name)
        ),
        "spec": spec,
    }
