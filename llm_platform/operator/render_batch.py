"""Single-pod stages (`data` with the local engine, `tokenizer`, `eval`, each with one worker) -> a batch/v1 Job.

A Ray cluster for work that fits one process would only add start-up time and moving parts.
"""

from __future__ import annotations

from typing import Any

from .pods import (
    child_metadata,
    container,
    llmp_command,
    pod_spec,
    pod_template,
    resource_requirements,
    starts_suspended,
    volumes,
)
from .render_context import RenderContext

API_VERSION = "batch/v1"
KIND = "Job"


def render_batch_job(ctx: RenderContext) -> dict[str, Any]:
    job, res = ctx.job, ctx.stage.resources
    vols, mounts = volumes(ctx, shm=res.gpus > 0)
    main = container(
        "stage",
        ctx.image,
        job,
        resource_requirements(res.cpu, res.memory, res.gpus),
        mounts,
        command=llmp_command(ctx),
    )
    template = pod_template(ctx, pod_spec(ctx, [main], vols, "Never"))
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": child_metadata(ctx),
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": ctx.options.ttl_seconds_after_finished,
            "suspend": starts_suspended(ctx),
            "template": template,
        },
    }
