"""Process group setup under torchrun, and what the training side applies to the plain model from outside:
activation checkpointing, torch.compile, FSDP2 sharding (`backend.build_backend` puts them together).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

from .precision import Precision


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: global rank, world size, rank on its node, processes per node, device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def node(self) -> int:
        return self.rank // self.local_world_size

    @property
    def nodes(self) -> int:
        return self.world_size // self.local_world_size


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is visible; set device: auto or cpu")
    return torch.device("cuda", local_rank)


CUDA_DEVICE_ENV = "LLMP_CUDA_DEVICE"
"""The CUDA device index a launcher gave this process, when it is not the local rank (Ray Train may show each
worker all of its node's GPUs and give it one of them)."""


def setup_distributed(device_preference: str = "auto") -> DistEnv:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK (which the Ray Train launcher sets the same way) and join the
    process group (NCCL on GPUs, gloo on CPU) unless the launcher already did."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    device = pick_device(device_preference, int(os.environ.get(CUDA_DEVICE_ENV, local_rank)))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistEnv(rank, world, local_rank, local_world, device)


def resolve_strategy(strategy: str, world_size: int) -> str:
    """`auto` is plain single-process training alone and DDP with several processes."""
    if strategy == "auto":
        return "ddp" if world_size > 1 else "single"
    return strategy


# --------------------------------------------------------------------------------------------- activation checkpointing
_SAVE_OPS = {
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten.bmm.default,
    torch.ops.aten._scaled_dot_product_flash_attention.default,
    torch.ops.aten._scaled_dot_product_efficient_attention.default,
    torch.ops.aten._scaled_dot_product_cudnn_attention.default,
}


def _keep_matmuls(ctx, op, *args, **kwargs) -> CheckpointPolicy:  # noqa: ARG001  # torch checkpoint policy_fn(ctx, op, ...)
    """Selective checkpointing: keep matmul and attention outputs (costly to redo), recompute the cheap
    element-wise ops (norms, activations, RoPE), whose outputs take most of the memory."""
    return CheckpointPolicy.MUST_SAVE if op in _SAVE_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def apply_activation_checkpointing(model: nn.Module, mode: str) -> None:
    """Recompute each transformer block in the backward pass: all of it (`full`) or its cheap ops (`selective`).

    The block's forward is wrapped in place, so parameter names (and so checkpoints and exports) do not change."""
    if mode == "none":
        return
    context_fn = functools.partial(create_selective_checkpoint_contexts, _keep_matmuls)
    for block in _blocks(model):
        inner = block.forward
        kwargs = {"use_reentrant": False}
        if mode == "selective":
            kwargs["context_fn"] = context_fn
        block.forward = functools.partial(checkpoint, inner, **kwargs)


def _blocks(model: nn.Module) -> list[nn.Module]:
    layers = getattr(model, "layers", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__} has no `layers`; activation checkpointing and FSDP wrap its blocks")
    return list(layers)


# --------------------------------------------------------------------------------------------- compile and FSDP2
COMPILE_GRANULARITIES = ("model", "block")


def compile_granularity(strategy: str) -> str:
    """The engine's choice for `compile: true`: one graph for the whole loss module, except under FSDP2, whose
    per-block all-gathers and reshards run as hooks between the blocks and so need a graph per block.

    The whole graph ran the fastest on one H200 (bench/RESULTS.md, MFU round 2) now that the model slices a cached
    RoPE table instead of computing it in the forward."""
    return "block" if strategy == "fsdp" else "model"


def compile_for_training(objective: nn.Module, model: nn.Module, granularity: str = "model") -> None:
    """torch.compile in place: the whole objective as one graph (`model`), or each transformer block on its own plus
    the LM head with the loss (`block`; the whole objective when the model has no blocks or no separate head).

    One graph lets the compiler fuse across block boundaries (a block's last residual add with the next block's
    norm) and launches the fewest kernels; per-block graphs compile once for all the identical blocks and leave
    room for FSDP's all-gathers between them."""
    if granularity not in COMPILE_GRANULARITIES:
        raise ValueError(f"compile granularity {granularity!r} is not one of {list(COMPILE_GRANULARITIES)}")
    blocks = getattr(model, "layers", None)
    if granularity == "model" or blocks is None or not hasattr(objective, "compile_head") or not objective.has_head:
        objective.compile()
        return
    for block in blocks:
        block.compile()
    objective.compile_head()


def fully_shard_blocks(objective: nn.Module, model: nn.Module, env: DistEnv, precision: Precision) -> nn.Module:
    """FSDP2 over each transformer block, then over the loss module for what is left (embeddings, final norm, head)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(env.device.type, (env.world_size,))
    policy = MixedPrecisionPolicy(param_dtype=precision.dtype, reduce_dtype=torch.float32)
    blocks = _blocks(model)
    for i, block in enumerate(blocks):
        # The last block's parameters are needed again at once by the backward pass: keep them gathered.
        fully_shard(block, mesh=mesh, mp_policy=policy, reshard_after_forward=i < len(blocks) - 1)
    fully_shard(objective, mesh=mesh, mp_policy=policy)
    return objective


def all_reduce_mean(value: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.world_size > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= env.world_size
    return value


def barrier(env: DistEnv) -> None:
    if env.world_size > 1:
        dist.barrier()
