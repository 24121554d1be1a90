"""`pretrain` / `finetune` / `align` stages -> a Kubeflow PyTorchJob (kubeflow.org/v1) running torchrun.

One Master and `nodes - 1` Workers (Worker replicas only, for elastic training), every pod a node of `nproc` ranks.
The training operator injects the rendezvous (PET_MASTER_ADDR, PET_NODE_RANK, ...), which torchrun reads from the
environment; failed pods are not restarted in place (`backoffLimit: 0`): the LLMJob operator decides retries and
re-creates the job, which resumes from the stage's latest checkpoint.
"""

from __future__ import annotations

from typing import Any

from llm_platform.api import Stage
from llm_platform.api.train import ParallelSpec

from .options import RenderError
from .pods import (
    child_metadata,
    container,
    pod_spec,
    pod_template,
    resource_requirements,
    stage_args,
    starts_suspended,
    volumes,
)
from .render_context import RenderContext

API_VERSION = "kubeflow.org/v1"
KIND = "PyTorchJob"
CONTAINER = "pytorch"  # the training operator finds the container to configure by this name
MASTER_PORT = 23456


def parallel_of(stage: Stage) -> ParallelSpec:
    """How a training stage spreads; `finetune` / `align` may leave out `train`, and so take the defaults."""
    if not stage.trains:
        raise RenderError((), f"stage '{stage.name}': a '{stage.kind}' stage does not train; it has no parallel layout")
    return stage.train.parallel if stage.train is not None else ParallelSpec()


def training_shape(stage: Stage) -> tuple[int, int]:
    """(nodes, GPUs per node) of a training stage: `train.parallel`, else `resources.gpus` on one node."""
    parallel = parallel_of(stage)
    return parallel.nodes, parallel.gpus_per_node or stage.resources.gpus


def torchrun_command(ctx: RenderContext, nodes: str, nproc: int) -> list[str]:
    return [
        "torchrun",
        f"--nnodes={nodes}",
        f"--nproc-per-node={nproc}",
        "-m",
        "llm_platform.cli",
        *stage_args(ctx),
    ]


def render_pytorchjob(ctx: RenderContext) -> dict[str, Any]:
    job, stage, jopts = ctx.job, ctx.stage, ctx.jopts
    nodes, gpus = training_shape(stage)
    nproc = gpus or 1  # on CPU one process per node
    elastic = jopts.elastic_nodes
    if elastic is not None:
        low, high = elastic
        replicas = min(max(nodes, low), high)
        nnodes = f"{low}:{high}"
    else:
        replicas, nnodes = nodes, str(nodes)

    vols, mounts = volumes(ctx, shm=True)

    def replica(count: int, serves_metrics: bool) -> dict[str, Any]:
        ports = [{"name": "pytorchjob-port", "containerPort": MASTER_PORT, "protocol": "TCP"}]
        if serves_metrics:
            ports.append({"name": "metrics", "containerPort": stage.train.metrics_port, "protocol": "TCP"})
        main = container(
            CONTAINER,
            ctx.image,
            job,
            resource_requirements(stage.resources.cpu, stage.resources.memory, gpus),
            mounts,
            command=torchrun_command(ctx, nnodes, nproc),
            ports=ports,
        )
        template = pod_template(ctx, pod_spec(ctx, [main], vols, None))
        return {"replicas": count, "restartPolicy": "Never", "template": template}

    # rank 0 serves the Prometheus metrics: the Master's pod, or any Worker's when training is elastic
    metrics = stage.train is not None and stage.train.metrics_port is not None
    if elastic is not None:
        replica_specs = {"Worker": replica(replicas, metrics)}
    else:
        replica_specs = {"Master": replica(1, metrics)}
        if nodes > 1:
            replica_specs["Worker"] = replica(nodes - 1, False)

    scheduling: dict[str, Any] = {"minAvailable": elastic[0] if elastic else nodes}
    if jopts.scheduling_queue:
        scheduling["queue"] = jopts.scheduling_queue
    if jopts.priority_class:
        scheduling["priorityClass"] = jopts.priority_class

    spec: dict[str, Any] = {
        "nprocPerNode": str(nproc),
        "pytorchReplicaSpecs": replica_specs,
        "runPolicy": {
            "backoffLimit": 0,
            "cleanPodPolicy": "Running",
            "ttlSecondsAfterFinished": ctx.options.ttl_seconds_after_finished,
            "suspend": starts_suspended(ctx),
            "schedulingPolicy": scheduling,
        },
    }
    if elastic is not None:
        spec["elasticPolicy"] = {
            "minReplicas": elastic[0],
            "maxReplicas": elastic[1],
            "rdzvBackend": "c10d",
            "maxRestarts": job.spec.max_retries,
        }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": child_metadata(ctx),
        "spec": spec,
    }
