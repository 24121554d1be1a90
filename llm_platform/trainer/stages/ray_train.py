"""`train.parallel.launcher: ray`: a training stage's runner on Ray Train's workers instead of in this process.

On a cluster the operator renders the stage as a KubeRay RayJob whose entrypoint, on the Ray head, is the same
`llmp stage run` as everywhere; `run_stage` takes the stage's lease there, as always, and its runner is this
module's `Launched`. That hands the stage to a Ray Train `TorchTrainer` with one worker per GPU (one per node on
CPU), which sets up torch.distributed (NCCL on GPUs, gloo on CPU) and calls `run_on_worker` in each: the worker
takes its rank from Ray Train's context and runs the stage's own runner, so the loop, the checkpoints (through the
artifact store, which every Ray pod can reach) and the export are those of a torchrun launch. Rank 0 commits the
runner's output folder to the store under a key of its own; the head copies it into the stage's output, and
`run_stage` commits it, so the stage's artifact is published exactly once, by the process holding the lease.

A worker that fails fails the Ray Train run (no automatic retries): re-running the stage resumes from its newest
checkpoint, as after any crash.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_platform.api import LLMJob, Stage
from llm_platform.storage import ArtifactStore

from .context import StageContext

if TYPE_CHECKING:
    from .registry import StageRunner


def launcher(stage: Stage) -> str:
    """`train.parallel.launcher` of a training stage (`torchrun` when the stage has no `train` section)."""
    return stage.train.parallel.launcher if stage.train is not None else "torchrun"


def worker_count(stage: Stage) -> tuple[int, bool]:
    """(Ray Train workers, whether each holds a GPU): one per GPU of `nodes` x `gpus_per_node`, else one per node."""
    parallel = stage.train.parallel
    if parallel.gpus_per_node:
        return parallel.nodes * parallel.gpus_per_node, True
    return parallel.nodes, False


def output_key(ctx: StageContext) -> str:
    """Where rank 0 leaves the runner's output for the head: beside the stage's checkpoints, keyed the same way."""
    return f"{ctx.stage.name}/ray-output/{ctx.fingerprint()}"


@dataclass(frozen=True)
class Launched:
    """A training stage's runner, run where its `launcher` says: in this process (alone, or one of torchrun's), or
    on Ray Train's workers."""

    runner: StageRunner

    def run(self, ctx: StageContext, out: Path) -> dict[str, Any]:
        if launcher(ctx.stage) != "ray":
            return self.runner.run(ctx, out)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError(
                f"stage '{ctx.stage.name}': train.parallel.launcher is ray, which starts its own workers, but this "
                "process is one of several (torchrun?); run `llmp stage run` once, or set launcher: torchrun"
            )
        return run_on_ray_train(ctx, out, self.runner)


def run_on_ray_train(ctx: StageContext, out: Path, runner: StageRunner) -> dict[str, Any]:
    """Run `runner` on Ray Train workers (joining the Ray cluster of $RAY_ADDRESS, or the one this process already
    joined, else starting a local one), copy rank 0's output into `out`, return its metrics."""
    ray = _import_ray()
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    workers, use_gpu = worker_count(ctx.stage)
    key = output_key(ctx)
    ctx.store.delete(key)  # a previous attempt's output is never taken for this one's
    if not ray.is_initialized():
        ray.init()
    payload = {
        "job": ctx.job,
        "stage": ctx.stage.name,
        "storage": ctx.store.uri,
        "runner": runner,
        "output_key": key,
        "run_id": uuid.uuid4().hex[:12],
        "use_gpu": use_gpu,
    }
    trainer = TorchTrainer(
        train_loop_per_worker=run_on_worker,
        train_loop_config=payload,
        # GPU workers pack onto the pods holding the GPUs; CPU workers spread, one per node
        scaling_config=ScalingConfig(
            num_workers=workers, use_gpu=use_gpu, placement_strategy="PACK" if use_gpu else "SPREAD"
        ),
        run_config=RunConfig(
            name=f"{ctx.job.metadata.name}-{ctx.stage.name}-{payload['run_id']}",
            storage_path=str(ctx.scratch / "ray-train"),
            failure_config=FailureConfig(max_failures=0),
        ),
    )
    ctx.console.print(f"[bold]{ctx.stage.name}[/]: Ray Train, {workers} worker(s){' with a GPU each' * use_gpu}")
    trainer.fit()
    manifest = ctx.store.manifest(key)
    if manifest is None:
        raise RuntimeError(f"stage '{ctx.stage.name}': Ray Train finished but rank 0 left no output under {key}")
    shutil.copytree(ctx.store.fetch(key), out, dirs_exist_ok=True)
    ctx.store.delete(key)
    return manifest.meta["metrics"]


def run_on_worker(payload: dict[str, Any]) -> None:
    """One Ray Train worker: the torchrun-style environment from Ray Train's context (the process group is already
    up), then the stage's runner; rank 0 commits the output for the head."""
    import ray.train

    from llm_platform.trainer.train.distributed import CUDA_DEVICE_ENV

    from .engine import RUN_ID_ENV

    context = ray.train.get_context()
    rank = context.get_world_rank()
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(context.get_world_size()),
        LOCAL_RANK=str(context.get_local_rank()),
        LOCAL_WORLD_SIZE=str(context.get_local_world_size()),
        NODE_RANK=str(context.get_node_rank()),
    )
    os.environ[RUN_ID_ENV] = payload["run_id"]  # the staging folder every rank of a node shares
    if payload["use_gpu"]:  # Ray Train may show a worker all of its node's GPUs: take the one it was given
        from ray.train.torch import get_device

        os.environ[CUDA_DEVICE_ENV] = str(get_device().index)
    job: LLMJob = payload["job"]
    store = ArtifactStore.open(payload["storage"])
    with tempfile.TemporaryDirectory(prefix=f"llmp-{payload['stage']}-") as tmp:
        ctx = StageContext(job=job, stage=job.spec.stage(payload["stage"]), store=store, scratch=Path(tmp))
        out = Path(tmp) / "out"
        out.mkdir()
        metrics = payload["runner"].run(ctx, out)
        if rank == 0:
            store.commit(payload["output_key"], out, {"metrics": metrics})


def _import_ray():
    try:
        import ray
        import ray.train.torch  # noqa: F401  # Ray Train's extra dependencies, checked before anything starts
    except ImportError as e:
        raise ImportError(
            "train.parallel.launcher: ray needs Ray Train: pip install 'llm-platform[ray]'; or use launcher: torchrun"
        ) from e
    return ray
