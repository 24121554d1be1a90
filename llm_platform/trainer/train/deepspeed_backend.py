"""DeepSpeed ZeRO 1/2/3 as an optional data-parallel backend (`train.parallel.strategy: deepspeed`).

The loop stays ours: the objective, the micro-batches, the LR schedule (written into the optimizer's groups each
step), metrics and checkpoint publishing. DeepSpeed owns what ZeRO changes: the partitioned optimizer, the gradient
reduction, accumulation over `grad_accum` micro-batches (its `backward` divides each loss by it), global-norm
clipping, the optimizer step and zero_grad, bf16/fp16 weights, and the checkpoint files.

What differs from ddp/fsdp:
- bf16/fp16 are DeepSpeed's: the module's weights are cast to 16 bits and the fp32 master copy lives in the ZeRO
  optimizer (our own loop keeps fp32 weights and runs the forward under autocast; the forward still runs under our
  autocast here, so norms and the loss see the same op dtypes).
- checkpoints are DeepSpeed's (`save_checkpoint`: per-rank optimizer partitions), published to the store by our
  `Checkpointer`; they resume at the same world size and ZeRO stage only (DCP checkpoints reshard, these do not),
  and are written synchronously (`async_checkpoint` does not apply).
- only `optimizer: adamw`; the 8-bit AdamW keeps quantized state that ZeRO cannot partition.

deepspeed is imported lazily, only for this strategy: it is in the `gpu` extra, not a core dependency.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .checkpoint_io import deepspeed_loads_weights_only
from .config import TrainConfig
from .distributed import DistEnv
from .optim import build_optimizer
from .precision import Precision

ZERO_STAGES = (1, 2, 3)


def import_deepspeed():
    """The deepspeed module, with an error that says how to get it (or what to use instead) when it is missing."""
    try:
        import deepspeed
    except ImportError as e:
        raise ImportError(
            "train.parallel.strategy: deepspeed needs the deepspeed package: pip install 'llm-platform[gpu]' "
            "(or pip install deepspeed); or use strategy: fsdp, which shards parameters, gradients and optimizer "
            "state as ZeRO-3 does with PyTorch alone"
        ) from e
    return deepspeed


def deepspeed_config(config: TrainConfig, precision: Precision) -> dict[str, Any]:
    """The DeepSpeed config dict our `TrainConfig` means (the global batch follows from micro batch x accum x ranks)."""
    stage = config.parallel.zero_stage
    if stage not in ZERO_STAGES:
        raise ValueError(f"train.parallel.zero_stage: {stage!r} is not one of {list(ZERO_STAGES)}")
    if config.optimizer != "adamw":
        raise ValueError(
            f"train.optimizer: {config.optimizer!r} does not run under strategy: deepspeed (ZeRO partitions plain "
            "AdamW state); use optimizer: adamw, or strategy: fsdp/ddp for adamw8bit"
        )
    return {
        "train_micro_batch_size_per_gpu": config.micro_batch,
        "gradient_accumulation_steps": config.grad_accum,
        "gradient_clipping": config.grad_clip,
        "bf16": {"enabled": precision.name == "bf16"},
        "fp16": {"enabled": precision.name == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        "zero_optimization": {"stage": stage},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


class DeepSpeedBackend:
    """`TrainBackend` over a DeepSpeed engine built around the loss module with our AdamW (the same parameter groups
    as ddp/fsdp); the engine's `optimizer` is the ZeRO optimizer the loop sets the learning rate on."""

    def __init__(self, objective: nn.Module, config: TrainConfig, env: DistEnv, precision: Precision) -> None:
        os.environ.setdefault("DS_ACCELERATOR", "cuda" if env.device.type == "cuda" else "cpu")
        ds_config = deepspeed_config(config, precision)
        deepspeed = import_deepspeed()
        _join_process_group(env)
        optimizer = build_optimizer(objective, config)
        self.module, _, _, _ = deepspeed.initialize(model=objective, optimizer=optimizer, config=ds_config)
        self.optimizer = self.module.optimizer
        self.device = env.device

    def grad_sync(self, enabled: bool) -> contextlib.AbstractContextManager:  # noqa: ARG002
        """The engine reduces gradients at its own accumulation boundary (every `grad_accum`-th backward)."""
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, micro_batches: int) -> None:  # noqa: ARG002
        """`engine.backward` divides by `grad_accum` itself; `engine.step` after each micro-batch is what counts
        them, and it steps, clips and zeroes the gradients at the boundary only."""
        self.module.backward(loss)
        self.module.step()

    def step(self, grad_clip: float) -> torch.Tensor:  # noqa: ARG002
        """The engine stepped in the last `backward` (clipping at `gradient_clipping` of its config); the pre-clipping
        global norm it measured."""
        norm = self.module.get_global_grad_norm()
        return torch.as_tensor(float("nan") if norm is None else norm, dtype=torch.float32, device=self.device)

    def checkpoint_state(self) -> DeepSpeedState:
        return DeepSpeedState(self.module)

    def scaler_state(self) -> dict[str, Any]:
        return {}  # fp16's loss scale is in the engine's own checkpoint files

    def load_scaler_state(self, state: dict[str, Any]) -> None:
        pass


class DeepSpeedState:
    """The engine's own checkpoint files (`save_checkpoint`: per-rank optimizer partitions), written synchronously
    into `<folder>`: DeepSpeed names a checkpoint by a directory and a tag, here the folder's parent and name."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def save(self, folder: Path, asynchronous: bool = False, group: Any = None) -> None:  # noqa: ARG002
        self.engine.save_checkpoint(str(folder.parent), tag=folder.name, save_latest=False)

    def load(self, folder: Path) -> None:
        deepspeed_loads_weights_only(self.engine)
        self.engine.load_checkpoint(str(folder.parent), tag=folder.name, load_lr_scheduler_states=False)


def _join_process_group(env: DistEnv) -> None:
    """DeepSpeed always needs a process group; a lone process (no torchrun) gets a group of one on a free port."""
    if dist.is_initialized():
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name, value in (("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", str(port)), ("RANK", "0"), ("WORLD_SIZE", "1")):
        os.environ.setdefault(name, value)
    os.environ.setdefault("LOCAL_RANK", str(env.local_rank))
    dist.init_process_group("nccl" if env.device.type == "cuda" else "gloo", rank=env.rank, world_size=env.world_size)


def gathered_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of `model` as a whole CPU tensor, ZeRO-3 partitions gathered (a collective: every
    rank calls it). Under ZeRO 1/2 the module's weights are already whole."""
    deepspeed = import_deepspeed()
    params = list(model.parameters())
    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        return {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}


def is_partitioned(model: nn.Module) -> bool:
    """Whether ZeRO-3 has partitioned `model`'s parameters (their local tensors are then empty placeholders)."""
    return any(hasattr(p, "ds_id") for p in model.parameters())
