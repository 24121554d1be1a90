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

import os
import socket
import sys
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .config import TrainConfig
from .distributed import DistEnv
from .optim import build_optimizer
from .precision import Precision

ZERO_STAGES = (1, 2, 3)
CHECKPOINT_TAG_PREFIX = "step_"


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


def wrap(objective: nn.Module, config: TrainConfig, env: DistEnv, precision: Precision):
    """`deepspeed.initialize` around the objective with our AdamW (same parameter groups as ddp/fsdp); returns the
    engine, whose `optimizer` is the ZeRO optimizer the loop sets the learning rate on."""
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if env.device.type == "cuda" else "cpu")
    ds_config = deepspeed_config(config, precision)
    deepspeed = import_deepspeed()
    _join_process_group(env)
    optimizer = build_optimizer(objective, config)
    engine, _, _, _ = deepspeed.initialize(model=objective, optimizer=optimizer, config=ds_config)
    return engine


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


def is_engine(module: object) -> bool:
    """Whether `module` is a DeepSpeed engine (without importing deepspeed when nothing did)."""
    deepspeed = sys.modules.get("deepspeed")
    return deepspeed is not None and isinstance(module, deepspeed.DeepSpeedEngine)


def optimizer_step(engine, model: nn.Module, micro_batches, precision: Precision):
    """One optimizer step through the engine: forward/backward per micro-batch and `engine.step()` after each (it
    steps, clips and zeroes the gradients at the accumulation boundary only). Returns what the loop's own step
    returns: the mean loss, the pre-clipping global gradient norm and the summed MoE expert loads."""
    total = None
    loads: dict[int, torch.Tensor] = {}
    expert_load = getattr(model, "expert_load", None)
    for batch in micro_batches:
        with precision.autocast():
            loss = engine(batch)
        engine.backward(loss)
        engine.step()
        total = loss.detach() if total is None else total + loss.detach()
        for layer, load in (expert_load() if expert_load else {}).items():
            loads[layer] = loads.get(layer, 0) + load.detach()
    norm = engine.get_global_grad_norm()
    grad_norm = torch.as_tensor(float("nan") if norm is None else norm, dtype=torch.float32, device=total.device)
    if loads and hasattr(model, "update_router_biases"):
        model.update_router_biases(loads)
    return total / len(micro_batches), grad_norm, loads


def checkpoint_tag(step: int) -> str:
    """The folder name of step `step`'s checkpoint: DeepSpeed writes its files straight into `<staging>/<tag>`."""
    return f"{CHECKPOINT_TAG_PREFIX}{step:08d}"


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
