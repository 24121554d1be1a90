"""Stages that use Ray -> a KubeRay RayJob (ray.io/v1): a Ray cluster made for the stage and gone after it.

`data` / `tokenizer` / `eval` with several workers (or `data.engine: ray`) run their `llmp stage run` as the Ray job's
entrypoint, on the head, fanning work out to the worker group. Training stages with `launcher: ray` get one worker
per node holding that node's GPUs, for Ray Train. KubeRay supplies `ray start`, so containers set no command.
KubeRay's submitter (the pod that runs `ray job submit`) gets our own template: KubeRay's default one would carry
no securityContext and fail a namespace that enforces Pod Security "restricted"; KubeRay fills in its command.
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
    scratch_volumes,
    starts_suspended,
    volumes,
)
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
    namespace = namespace_of(job, options)
    vols, mounts = volumes(job, jopts, shm=True)
    cpu, memory = stage.resources.cpu, stage.resources.memory

    def template(main: dict[str, Any], pod_volumes: list[dict[str, Any]], restart: str | None = None) -> dict[str, Any]:
        spec = pod_spec(job, stage, namespace, jopts, [main], pod_volumes, restart)
        return pod_template(job.metadata.name, stage, attempt, spec)

    # The head runs the driver (the stage command) and Ray's control plane; GPUs go to the workers. Both read and
    # write the store; the submitter only talks to the head's dashboard, so it gets no storage credentials.
    head = container("ray-head", image, job, resource_requirements(cpu, memory, 0), mounts)
    worker = container("ray-worker", image, job, resource_requirements(cpu, memory, gpus), mounts)
    scratch, scratch_mounts = scratch_volumes()
    submitter = container(SUBMITTER, image, job, SUBMITTER_RESOURCES, scratch_mounts, storage=False)

    cluster: dict[str, Any] = {
        "rayVersion": options.ray_version,
        "headGroupSpec": {"rayStartParams": {"dashboard-host": "0.0.0.0"}, "template": template(head, vols)},
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
        "entrypoint": llmp_command_line(job, stage, jopts),
        "submissionMode": "K8sJobMode",
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": options.ttl_seconds_after_finished,
        "backoffLimit": 0,
        "suspend": starts_suspended(job, jopts),
        "submitterPodTemplate": template(submitter, scratch, "Never"),
        "rayClusterSpec": cluster,
    }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": child_metadata(
            job, stage, namespace, attempt, jopts, owner_uid, child_name(namespace, job.metadata.name, stage.name)
        ),
        "spec": spec,
    }
