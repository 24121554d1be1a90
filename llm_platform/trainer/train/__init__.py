"""The training engine shared by the pretrain, finetune and align stages.

`train(model, config, loader, env, ...)` runs the loop (`loop.py`: `build_training`, `train_step`, `train_loop`);
`build_backend` wraps the loss module for DDP, FSDP2 or DeepSpeed behind one `TrainBackend` (`backend.py`);
`setup_distributed` joins torchrun's process group; `Checkpointer` saves and restores sharded checkpoints through the
artifact store. Importing this package does not import torch; the names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import ParallelConfig, TrainConfig

_LAZY = {
    "train": "loop",
    "build_training": "loop",
    "train_step": "loop",
    "train_loop": "loop",
    "TrainResult": "loop",
    "TrainBackend": "backend",
    "build_backend": "backend",
    "NonFiniteLossError": "loop",
    "evaluate": "loop",
    "setup_distributed": "distributed",
    "DistEnv": "distributed",
    "Checkpointer": "checkpoint",
    "MetricsLog": "metrics",
    "NextTokenLoss": "objective",
}

__all__ = ["ParallelConfig", "TrainConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
