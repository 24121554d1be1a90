"""Single-pod stages (`data` with the local engine, `tokenizer`, `eval`, each with one worker) -> a batch/v1 Job.

A Ray cluster for work that fits one process would only add start-up time and moving parts.
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
    llmp_command,
    pod_spec,
    pod_template,
    resource_requirements,
    starts_suspended,
    volumes,
)

API_VERSION = "batch/v1"
KIND = "Job"


def render_batch_job(
    job: LLMJob,
    stage: Stage,
    options: RenderOptions | None = None,
    *,
    attempt: int = 1,
    owner_uid: str | None = None,
) -> dict[str, Any]:
    options = options or RenderOptions()
    jopts = job_options(job)
    res = stage.resources
    namespace = namespace_of(job, options)
    vols, mounts = volumes(job, jopts, shm=res.gpus > 0)
    main = container(
        "stage",
        image_of(job, stage, options),
        job,
        resource_requirements(res.cpu, res.memory, res.gpus),
        mounts,
        command=llmp_command(job, stage, jopts),
    )
    template = pod_template(
        job.metadata.name, stage, attempt, pod_spec(job, stage, namespace, jopts, [main], vols, "Never")
    )
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": child_metadata(
            job, stage, namespace, attempt, jopts, owner_uid, child_name(namespace, job.metadata.name, stage.name)
        ),
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": options.ttl_seconds_after_finished,
            "suspend": starts_suspended(job, jopts),
            "template": template,
        },
    }
