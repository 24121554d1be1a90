"""The data-parallel backends behind one interface: how a step's gradients are made, synchronised and applied, and
how the trained state is checkpointed.

`build_backend` applies what the training side adds to the plain model (activation checkpointing, torch.compile)
and wraps the loss module for the strategy: one process, DDP, FSDP2, or DeepSpeed ZeRO. The loop then only calls
the `TrainBackend` methods, so it reads the same for all four; each strategy's differences live in its class.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from .checkpoint_io import SafeFileSystemReader, SafeLoadPlanner
from .config import TrainConfig
from .distributed import (
    DistEnv,
    apply_activation_checkpointing,
    compile_for_training,
    compile_granularity,
    fully_shard_blocks,
    resolve_strategy,
)
from .optim import build_optimizer
from .precision import Precision


class CheckpointState(Protocol):
    """The trained state as checkpoint files: what `Checkpointer` writes into a step's folder and reads back."""

    def save(self, folder: Path, asynchronous: bool = False, group: Any = None) -> Future | None:
        """Write this rank's files into `folder`. With `asynchronous`, return a future once the state is copied
        (the write continues in the background, collectives on `group`); else write and return None."""

    def load(self, folder: Path) -> None:
        """Read `folder` back into the live model and optimizer (every rank calls it)."""


class TrainBackend(Protocol):
    """One data-parallel strategy, as the loop sees it.

    A step is: for each micro-batch, `with grad_sync(last)`: forward through `module`, `backward(loss, n)`; then
    `step(grad_clip)`. The learning rate is written into `optimizer`'s parameter groups before each step."""

    module: nn.Module  # the loss module as wrapped for the strategy: forward(batch) -> loss
    optimizer: torch.optim.Optimizer

    def grad_sync(self, enabled: bool) -> contextlib.AbstractContextManager:
        """A context for one micro-batch's forward and backward: gradients are reduced across ranks only when
        `enabled` (the last micro-batch of a step)."""

    def backward(self, loss: torch.Tensor, micro_batches: int) -> None:
        """Accumulate the gradient of `loss / micro_batches` (scaled for fp16)."""

    def step(self, grad_clip: float) -> torch.Tensor:
        """Clip the global gradient norm, apply the optimizer, zero the gradients; returns the norm before
        clipping, on the device (NaN/Inf when the gradients overflowed)."""

    def checkpoint_state(self) -> CheckpointState:
        """Model and optimizer as checkpoint files."""

    def scaler_state(self) -> dict[str, Any]:
        """The loss scaler's state as JSON values (saved with the loop's own state); {} when the backend keeps it in
        its checkpoint files."""

    def load_scaler_state(self, state: dict[str, Any]) -> None: ...


class DCPState:
    """Model and optimizer as a torch distributed checkpoint: every rank writes its own shards, and any number of
    ranks can read them back (DCP reshards). Names are the plain model's, whatever wraps it."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model, self.optimizer = model, optimizer

    def save(self, folder: Path, asynchronous: bool = False, group: Any = None) -> Future | None:
        model_sd, optim_sd = get_state_dict(self.model, self.optimizer)
        state = {"model": model_sd, "optim": optim_sd}
        no_dist = not dist.is_initialized()
        if not asynchronous:
            dcp.save(state, checkpoint_id=folder, no_dist=no_dist)
            return None
        return dcp.async_save(state, checkpoint_id=folder, process_group=group, no_dist=no_dist)

    def load(self, folder: Path) -> None:
        model_sd, optim_sd = get_state_dict(self.model, self.optimizer)
        state = {"model": model_sd, "optim": optim_sd}
        reader = SafeFileSystemReader(folder)
        dcp.load(state, storage_reader=reader, planner=SafeLoadPlanner(), no_dist=not dist.is_initialized())
        set_state_dict(self.model, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])


class TorchBackend:
    """One process, DDP or FSDP2: our optimizer and loss scaler, gradients accumulated by autograd, the global norm
    clipped by `clip_grad_norm_` (over DTensor shards under FSDP2, so the norm is the whole model's)."""

    def __init__(self, module: nn.Module, model: nn.Module, config: TrainConfig, precision: Precision) -> None:
        self.module, self.model = module, model
        self.optimizer = build_optimizer(module, config)
        self.scaler = precision.grad_scaler()

    def grad_sync(self, enabled: bool) -> contextlib.AbstractContextManager:
        if isinstance(self.module, nn.parallel.DistributedDataParallel):
            return contextlib.nullcontext() if enabled else self.module.no_sync()
        if hasattr(self.module, "set_requires_gradient_sync"):  # FSDP2
            self.module.set_requires_gradient_sync(enabled)
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, micro_batches: int) -> None:
        self.scaler.scale(loss / micro_batches).backward()

    def step(self, grad_clip: float) -> torch.Tensor:
        self.scaler.unscale_(self.optimizer)
        grad_norm = nn.utils.clip_grad_norm_(self.module.parameters(), grad_clip, foreach=True)
        if hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor
            grad_norm = grad_norm.full_tensor()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm.detach()

    def checkpoint_state(self) -> CheckpointState:
        return DCPState(self.model, self.optimizer)

    def scaler_state(self) -> dict[str, Any]:
        return self.scaler.state_dict()

    def load_scaler_state(self, state: dict[str, Any]) -> None:
        if state:
            self.scaler.load_state_dict(state)


def _single(objective: nn.Module, model: nn.Module, config: TrainConfig, env: DistEnv, precision: Precision):  # noqa: ARG001
    return TorchBackend(objective, model, config, precision)


def _ddp(objective: nn.Module, model: nn.Module, config: TrainConfig, env: DistEnv, precision: Precision):
    ids = [env.device.index] if env.device.type == "cuda" else None
    # buffers (the RoPE table) are identical on every rank; broadcasting them each step would only cost bandwidth
    module = nn.parallel.DistributedDataParallel(objective, device_ids=ids, broadcast_buffers=False)
    return TorchBackend(module, model, config, precision)


def _fsdp(objective: nn.Module, model: nn.Module, config: TrainConfig, env: DistEnv, precision: Precision):
    return TorchBackend(fully_shard_blocks(objective, model, env, precision), model, config, precision)


def _deepspeed(objective: nn.Module, model: nn.Module, config: TrainConfig, env: DistEnv, precision: Precision):  # noqa: ARG001
    from .deepspeed_backend import DeepSpeedBackend

    return DeepSpeedBackend(objective, config, env, precision)


BuildBackend = Callable[[nn.Module, nn.Module, TrainConfig, DistEnv, Precision], TrainBackend]
BACKENDS: dict[str, BuildBackend] = {"single": _single, "ddp": _ddp, "fsdp": _fsdp, "deepspeed": _deepspeed}


def build_backend(
    objective: nn.Module,
    model: nn.Module,
    config: TrainConfig,
    env: DistEnv,
    precision: Precision,
    granularity: str | None = None,
) -> TrainBackend:
    """Apply activation checkpointing and torch.compile to `model` (inside the loss module `objective`) from outside,
    then wrap `objective` for `config.parallel.strategy`; `granularity` overrides the compile graphs' choice
    (`compile_granularity`), for benchmarks."""
    strategy = resolve_strategy(config.parallel.strategy, env.world_size)
    if strategy not in BACKENDS:
        raise ValueError(f"train.parallel.strategy: {strategy!r} is not one of auto, ddp, fsdp, deepspeed")
    apply_activation_checkpointing(model, config.activation_checkpointing)
    if config.compile:
        compile_for_training(objective, model, granularity or compile_granularity(strategy))
    return BACKENDS[strategy](objective, model, config, env, precision)
