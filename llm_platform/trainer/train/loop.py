"""The training loop every training stage runs: `train(model, config, loader, env, ...) -> TrainResult`.

Three levels, each one function: `build_training` puts together what the loop needs (the backend around the loss
module, the checkpoint to resume from) as a `Training`; `train_step` is one optimizer step (the scheduled learning
rate, `grad_accum` micro-batches with gradient sync only on the last, clipping, the update) returning a `StepResult`;
`train_loop` runs the steps and, every `log_every` steps, writes a metrics record, evaluates and checkpoints.

Losses stay on the device between log steps, so the GPU is never stalled by a `.item()`; they are checked for
NaN/Inf at every log, evaluation and checkpoint step, so a checkpoint is only ever written from finite state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from llm_platform.trainer.data.loader import eval_batches
from llm_platform.trainer.progress import StepProgress

from .backend import TrainBackend, build_backend
from .checkpoint import Checkpointer
from .config import TrainConfig
from .distributed import DistEnv, all_reduce_mean
from .loss import IGNORE_INDEX
from .metrics import MetricsLog, expert_shares, mfu, peak_flops
from .objective import NextTokenLoss
from .optim import set_lr
from .precision import Precision
from .progress import Throughput, print_record
from .schedules import learning_rate


class NonFiniteLossError(RuntimeError):
    """The loss or gradient norm became NaN/Inf; training stopped without writing a checkpoint of that state."""


@dataclass
class TrainResult:
    steps: int
    loss_start: float | None
    loss_end: float | None
    tokens_per_s: float | None
    mfu: float | None
    val_loss: float | None
    tokens: int
    resumed_from: int | None = None
    records: list[dict[str, Any]] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        """The headline numbers a stage returns (rounded for the manifest and the summary table)."""
        out = {
            "steps": self.steps,
            "tokens": self.tokens,
            "loss_start": _round(self.loss_start, 4),
            "loss_end": _round(self.loss_end, 4),
            "tokens_per_s": _round(self.tokens_per_s, 1),
            "val_loss": _round(self.val_loss, 4),
        }
        if self.mfu is not None:
            out["mfu"] = round(self.mfu, 4)
        if self.resumed_from is not None:
            out["resumed_from_step"] = self.resumed_from
        return {k: v for k, v in out.items() if v is not None}


def train(
    model: nn.Module,
    config: TrainConfig,
    loader,
    env: DistEnv,
    *,
    val_tokens: np.ndarray | None = None,
    val_batches: Callable[[], Iterable[dict[str, torch.Tensor]]] | None = None,
    objective: nn.Module | None = None,
    checkpointer: Checkpointer | None = None,
    log: MetricsLog | None = None,
    console: Console | None = None,
    flops_per_token: float | None = None,
    compile_granularity: str | None = None,
) -> TrainResult:
    """Train `model` (a plain nn.Module on the CPU or already on `env.device`) in place and return the metrics:
    `train_loop(build_training(...))`.

    loader: yields this rank's micro-batches per step (`next_step()`) and saves its position (`state_dict()`);
        `PretrainLoader` for pretraining.
    val_tokens: the validation split of a pretraining run, evaluated in windows like the training data.
    val_batches: instead, a function giving this rank's validation batches (dicts with `input_ids` and `labels`,
        fine-tuning); every rank must get as many batches (under FSDP each forward is a collective).
    objective: module whose forward(micro_batch) returns the loss; default `NextTokenLoss(model)`.
    checkpointer: training resumes from its latest checkpoint if there is one.
    flops_per_token: training FLOPs per token, for MFU (`llm_platform.trainer.model.flops_per_token`).
    compile_granularity: with `config.compile`, `model` (one graph) or `block` (one per block) instead of the
        engine's choice (`distributed.compile_granularity`); for benchmarks.
    """
    training = build_training(
        model,
        config,
        loader,
        env,
        objective=objective,
        validation=validation_source(val_tokens, val_batches, config, env),
        checkpointer=checkpointer,
        log=log,
        console=console,
        flops_per_token=flops_per_token,
        compile_granularity=compile_granularity,
    )
    return train_loop(training)


# ----------------------------------------------------------------------------------------------------------- build
@dataclass
class TrainState:
    """What the loop carries from step to step and saves in each checkpoint (with the loader's position)."""

    step: int = 0  # optimizer steps done
    loss_start: float | None = None  # of the first logged step
    loss_end: float | None = None  # of the latest logged step
    val_loss: float | None = None  # of the latest evaluation

    def summary(self) -> dict[str, float | None]:
        return {"loss_start": self.loss_start, "loss_end": self.loss_end, "val_loss": self.val_loss}

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> TrainState:
        summary = saved.get("summary", {})
        return cls(saved["step"], summary.get("loss_start"), summary.get("loss_end"), summary.get("val_loss"))


@dataclass
class Training:
    """Everything `train_loop` runs, put together by `build_training`."""

    model: nn.Module  # the plain model (MoE hooks, expert loads)
    backend: TrainBackend  # the loss module as the strategy wraps it, its optimizer and checkpoint files
    config: TrainConfig
    env: DistEnv
    loader: Any  # next_step() -> micro-batches; state_dict() / load_state_dict()
    precision: Precision
    state: TrainState
    total_steps: int
    validation: Callable[[], Iterable] | None  # this rank's validation batches, afresh for each evaluation
    checkpointer: Checkpointer | None
    log: MetricsLog | None
    console: Console
    flops_per_token: float | None


def build_training(
    model: nn.Module,
    config: TrainConfig,
    loader,
    env: DistEnv,
    *,
    objective: nn.Module | None = None,
    validation: Callable[[], Iterable] | None = None,
    checkpointer: Checkpointer | None = None,
    log: MetricsLog | None = None,
    console: Console | None = None,
    flops_per_token: float | None = None,
    compile_granularity: str | None = None,
) -> Training:
    """Move `model` to the device (FP8 if asked), wrap its loss module in the strategy's backend, and resume the
    backend, the loader and the loop's state from the checkpointer's newest checkpoint, if there is one."""
    console = console or Console(stderr=True)
    precision = Precision.resolve(config.precision, env.device)
    model.to(env.device)
    if config.fp8:
        from .fp8 import convert_to_fp8

        convert_to_fp8(model, env.device)
    if objective is None:
        objective = NextTokenLoss(model, config.z_loss, fused_loss=env.device.type == "cuda")
    backend = build_backend(objective, model, config, env, precision, compile_granularity)
    state = TrainState()
    saved = checkpointer.restore(backend.checkpoint_state()) if checkpointer is not None else None
    if saved is not None:
        state = TrainState.from_checkpoint(saved)
        loader.load_state_dict(saved["loader"])
        backend.load_scaler_state(saved.get("scaler") or {})
        if env.is_main:
            console.print(f"[bold]train[/]: resumed from the checkpoint of step {state.step}")
    return Training(
        model=model,
        backend=backend,
        config=config,
        env=env,
        loader=loader,
        precision=precision,
        state=state,
        total_steps=config.total_steps(env.world_size),
        validation=validation,
        checkpointer=checkpointer,
        log=log,
        console=console,
        flops_per_token=flops_per_token,
    )


def validation_source(
    tokens: np.ndarray | None, batches: Callable | None, config: TrainConfig, env: DistEnv
) -> Callable[[], Iterable] | None:
    """This rank's validation batches: windows of the token split (pretraining), or what `batches()` gives."""
    if tokens is not None:
        return lambda: eval_batches(
            tokens, config.seq_len, config.micro_batch, config.eval_batches, env.rank, env.world_size
        )
    return batches


# ------------------------------------------------------------------------------------------------------ one step
@dataclass
class StepResult:
    """One optimizer step's numbers, left on the device until a log step brings them to the host."""

    step: int  # 1-based
    lr: float
    loss: torch.Tensor  # mean over the micro-batches and the ranks
    grad_norm: torch.Tensor  # before clipping
    expert_loads: dict[int, torch.Tensor]  # MoE tokens per expert per layer, summed over the micro-batches


def train_step(training: Training, step: int) -> StepResult:
    """Optimizer step `step` (0-based): the scheduled learning rate, forward/backward over this rank's
    micro-batches, clip and update, then the MoE router biases from the step's expert loads."""
    config = training.config
    lr = learning_rate(
        step,
        lr=config.lr,
        total=training.total_steps,
        warmup=config.warmup_steps,
        schedule=config.schedule,
        min_ratio=config.min_lr_ratio,
        decay_fraction=config.decay_fraction,
    )
    set_lr(training.backend.optimizer, lr)
    loss, loads = forward_backward(training.backend, training.model, training.loader.next_step(), training.precision)
    grad_norm = training.backend.step(config.grad_clip)
    if loads and hasattr(training.model, "update_router_biases"):
        training.model.update_router_biases(loads)
    return StepResult(step + 1, lr, all_reduce_mean(loss, training.env), grad_norm, loads)


def forward_backward(
    backend: TrainBackend, model: nn.Module, micro_batches, precision: Precision
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Forward and backward over the micro-batches (tensors, or dicts of tensors such as input_ids/labels), the
    gradients reduced across ranks with the last one only. Returns the mean loss (a device tensor) and the MoE
    expert loads summed over the micro-batches."""
    total = None
    loads: dict[int, torch.Tensor] = {}
    last = len(micro_batches) - 1
    for i, batch in enumerate(micro_batches):
        with backend.grad_sync(i == last):
            with precision.autocast():
                loss = backend.module(batch)
            backend.backward(loss, len(micro_batches))
        total = loss.detach() if total is None else total + loss.detach()
        for layer, load in _expert_load(model).items():
            loads[layer] = loads.get(layer, 0) + load.detach()
    return total / len(micro_batches), loads


def _expert_load(model: nn.Module) -> dict[int, torch.Tensor]:
    fn = getattr(model, "expert_load", None)
    return fn() if fn is not None else {}


# ---------------------------------------------------------------------------------------------------------- loop
def train_loop(training: Training) -> TrainResult:
    """Run the steps from `training.state.step` to the end; every `log_every` steps (and at evaluation and checkpoint
    steps, and the last) bring the losses to the host, write a record, evaluate and checkpoint."""
    config, env, state = training.config, training.env, training.state
    start, total = state.step, training.total_steps
    tokens_per_step = config.tokens_per_step(env.world_size)
    peak = peak_flops(env.device)
    records: list[dict[str, Any]] = []
    pending: list[StepResult] = []
    throughput = Throughput(env.device)
    listener = training.log.on_progress if training.log is not None else None
    progress = None
    if env.is_main:
        progress = StepProgress(training.console, "train", total, start, "steps", listener=listener).start()
    training.backend.module.train()
    try:
        for step in range(start, total):
            pending.append(train_step(training, step))
            throughput.count(tokens_per_step)
            state.step = done = step + 1
            is_last = done == total
            wants_eval = training.validation is not None and (is_last or _every(config.eval_every, done))
            wants_ckpt = training.checkpointer is not None and (is_last or _every(config.checkpoint_every, done))
            if done % config.log_every == 0 or is_last or wants_eval or wants_ckpt:
                record = _record(training, pending, throughput, peak, wants_eval)
                pending = []
                records.append(record)
                if env.is_main:
                    if training.log is not None:
                        training.log.write(record)
                    print_record(progress, training.console, record, total)
                if wants_ckpt:
                    _save(training)
                if wants_eval or wants_ckpt:  # throughput counts training only
                    throughput.restart()
            if progress is not None:
                progress.update(done)
    finally:
        if progress is not None:
            progress.stop()
        if training.checkpointer is not None:
            training.checkpointer.wait()
    tps = throughput.mean()
    fpt = training.flops_per_token
    return TrainResult(
        steps=total,
        loss_start=state.loss_start,
        loss_end=state.loss_end,
        tokens_per_s=tps,
        mfu=mfu(fpt, tps, peak, env.world_size) if fpt and tps else None,
        val_loss=state.val_loss,
        tokens=total * tokens_per_step,
        resumed_from=start or None,
        records=records,
    )


def _every(n: int, done: int) -> bool:
    return bool(n) and done % n == 0


def _record(
    training: Training, pending: list[StepResult], throughput: Throughput, peak: float | None, wants_eval: bool
) -> dict[str, Any]:
    """The log record of the latest step: its loss, learning rate and gradient norm (all pending steps checked for
    NaN/Inf), throughput and MFU since the previous record, peak memory, expert loads, and the validation loss."""
    state, env = training.state, training.env
    flushed = _flush(pending, training.config)
    if state.loss_start is None:
        state.loss_start = flushed[0]["loss"]
    state.loss_end = flushed[-1]["loss"]
    record = flushed[-1]
    window = throughput.lap()
    if window is not None:
        tps = window[0] / window[1]
        record |= {"tokens_per_s": round(tps, 1), "new_tokens": window[0]}
        if training.flops_per_token:
            record["mfu"] = _round(mfu(training.flops_per_token, tps, peak, env.world_size), 4)
    if env.device.type == "cuda":
        record["memory_bytes"] = torch.cuda.max_memory_allocated(env.device)
        torch.cuda.reset_peak_memory_stats(env.device)
    if pending[-1].expert_loads:
        record["expert_load"] = expert_shares(pending[-1].expert_loads)
    if wants_eval:
        state.val_loss = evaluate(training.backend.module, training.validation(), env, training.precision)
        record["val_loss"] = round(state.val_loss, 5)
        training.backend.module.train()
    return record


def _save(training: Training) -> None:
    state = training.state
    saved = {
        "step": state.step,
        "loader": training.loader.state_dict(),
        "scaler": training.backend.scaler_state(),
        "summary": state.summary(),
    }
    training.checkpointer.save(state.step, training.backend.checkpoint_state(), saved)


def _flush(pending: list[StepResult], config: TrainConfig) -> list[dict[str, Any]]:
    """Bring the pending steps' losses to the host (one sync) and stop on the first non-finite one."""
    losses = torch.stack([p.loss for p in pending]).float().cpu().tolist()
    norms = torch.stack([p.grad_norm for p in pending]).float().cpu().tolist()
    out = []
    for result, loss, norm in zip(pending, losses, norms, strict=True):
        # fp16 skips steps with overflowing gradients (the loss scaler's job); a non-finite loss is always fatal.
        if not math.isfinite(loss) or (not math.isfinite(norm) and config.precision != "fp16"):
            raise NonFiniteLossError(
                f"step {result.step}: loss {loss}, grad norm {norm}; stopping without saving this state. Lower "
                "train.lr or raise warmup_steps, then re-run: training resumes from the last good checkpoint"
            )
        out.append({"step": result.step, "loss": loss, "lr": result.lr, "grad_norm": norm})
    return out


@torch.no_grad()
def evaluate(module: nn.Module, batches: Iterable, env: DistEnv, precision: Precision) -> float:
    """Mean next-token loss per scored token over this rank's validation batches, averaged over all ranks: token
    windows [B, T + 1] (every target scored) or dicts whose `labels` mark unscored targets with -100."""
    module.eval()
    sums = torch.zeros(2, device=env.device, dtype=torch.float64)
    for batch in batches:
        if isinstance(batch, dict):
            batch = {k: v.to(env.device) for k, v in batch.items()}
            n = int((batch["labels"] != IGNORE_INDEX).sum())
        else:
            batch = batch.to(env.device)
            n = batch.size(0) * (batch.size(1) - 1)
        with precision.autocast():
            loss = module(batch)
        sums += torch.stack([loss.double() * n, torch.tensor(float(n), device=env.device, dtype=torch.float64)])
    if env.world_size > 1:
        torch.distributed.all_reduce(sums)
    return (sums[0] / sums[1]).item()


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
