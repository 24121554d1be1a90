"""What every training stage (pretrain, finetune) sets up around the engine the same way: seeding, the metrics log
of rank 0, and checkpoints in the store keyed by the stage fingerprint (so a changed spec never resumes a stale run).
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llm_platform.trainer.train.checkpoint import Checkpointer
from llm_platform.trainer.train.config import TrainConfig
from llm_platform.trainer.train.distributed import DistEnv
from llm_platform.trainer.train.metrics import MetricsLog

from .context import StageContext


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def metrics_log(ctx: StageContext, config: TrainConfig, env: DistEnv, log_dir: Path, settings: dict[str, Any]):
    """The training log in `log_dir`; only rank 0 writes it, logs to TensorBoard/W&B and serves Prometheus, and
    mirrors the log files to `<stage>/live/` in the store as it trains."""
    main = env.is_main
    live = ctx.progress if main else None
    if live is not None:  # the log files reach the store while training, not only with the commit
        live.watch(log_dir / "train_log.jsonl")
        if config.tensorboard:
            live.watch(log_dir / "tensorboard")
    return MetricsLog(
        log_dir if main else None,
        tensorboard=config.tensorboard and main,
        wandb_project=config.wandb_project if main else None,
        metrics_port=config.metrics_port if main else None,
        run_name=f"{ctx.job.metadata.name}-{ctx.stage.name}",
        job=ctx.job.metadata.name,
        stage=ctx.stage.name,
        config=settings,
        on_progress=live,
    )


def checkpointer(ctx: StageContext, config: TrainConfig, env: DistEnv) -> Checkpointer:
    fingerprint = ctx.fingerprint()
    return Checkpointer(
        ctx.store,
        f"{ctx.stage.name}/checkpoints/{fingerprint}",
        env,
        staging=staging_dir(fingerprint),
        keep=config.keep_checkpoints,
        async_save=config.async_checkpoint,
    )


def staging_dir(fingerprint: str) -> Path:
    """A folder every rank on this node agrees on (torchrun gives the launch a run id) to write shards into."""
    run = os.environ.get("TORCHELASTIC_RUN_ID") or str(os.getpid())
    return Path(tempfile.gettempdir()) / "llmp-checkpoints" / f"{fingerprint}-{run}"
