"""The training loop every training stage runs: `train(model, config, loader, env, ...) -> TrainResult`.

One optimizer step: set the scheduled learning rate, run `grad_accum` micro-batches (gradient sync only on the last),
unscale (fp16), clip the global gradient norm, step, and every `log_every` steps write a metrics record. Losses stay
on the device between log steps, so the GPU is never stalled by a `.item()`; they are checked for NaN/Inf at every
log, evaluation and checkpoint step, so a checkpoint is only ever written from finite state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from llm_platform.trainer.data.loader import eval_batches

from .config import TrainConfig
from .deepspeed_backend import is_engine
from .deepspeed_backend import optimizer_step as engine_step
from .distributed import DistEnv, all_reduce_mean, parallelize, set_grad_sync
from .loss import IGNORE_INDEX
from .metrics import MetricsLog, expert_shares, mfu, peak_flops
from .objective import NextTokenLoss
from .optim import build_optimizer, set_lr
from .precision import Precision
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
    checkpointer=None,
    log: MetricsLog | None = None,
    console: Console | None = None,
    flops_per_token: float | None = None,
    compile_granularity: str | None = None,
) -> TrainResult:
    """Train `model` (a plain nn.Module on the CPU or already on `env.device`) in place and return the metrics.

    loader: yields this rank's micro-batches per step (`next_step()`) and saves its position (`state_dict()`);
        `PretrainLoader` for pretraining.
    val_tokens: the validation split of a pretraining run, evaluated in windows like the training data.
    val_batches: instead, a function giving this rank's validation batches (dicts with `input_ids` and `labels`,
        fine-tuning); every rank must get as many batches (under FSDP each forward is a collective).
    objective: module whose forward(micro_batch) returns the loss; default `NextTokenLoss(model)`.
    checkpointer: a `Checkpointer`; training resumes from its latest checkpoint if there is one.
    flops_per_token: training FLOPs per token, for MFU (`llm_platform.trainer.model.flops_per_token`).
    compile_granularity: with `config.compile`, `model` (one graph) or `block` (one per block) instead of the
        engine's choice (`distributed.compile_granularity`); for benchmarks.
    """
    console = console or Console(stderr=True)
    precision = Precision.resolve(config.precision, env.device)
    model.to(env.device)
    if config.fp8:
        from .fp8 import convert_to_fp8

        convert_to_fp8(model, env.device)
    if objective is None:
        objective = NextTokenLoss(model, config.z_loss, fused_loss=env.device.type == "cuda")
    module = parallelize(objective, model, config, env, precision, compile_granularity)
    optimizer = module.optimizer if is_engine(module) else build_optimizer(module, config)
    checkpointed = module if is_engine(module) else model  # a DeepSpeed engine saves and loads its own state
    scaler = precision.grad_scaler()
    total = config.total_steps(env.world_size)
    state = checkpointer.restore(checkpointed, optimizer) if checkpointer is not None else None
    start = 0
    summary: dict[str, Any] = {}
    if state is not None:
        start = state["step"]
        loader.load_state_dict(state["loader"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        summary = state.get("summary", {})
        if env.is_main:
            console.print(f"[bold]train[/]: resumed from the checkpoint of step {start}")

    tokens_per_step = config.tokens_per_step(env.world_size)
    peak = peak_flops(env.device)
    records: list[dict[str, Any]] = []
    pending: list[tuple[int, float, torch.Tensor, torch.Tensor]] = []  # step, lr, loss, grad norm
    window_start, window_tokens, throughput = None, 0, []
    last_val = summary.get("val_loss")
    progress = _progress(console, env, total, start)
    module.train()
    try:
        for step in range(start, total):
            lr = learning_rate(
                step,
                lr=config.lr,
                total=total,
                warmup=config.warmup_steps,
                schedule=config.schedule,
                min_ratio=config.min_lr_ratio,
                decay_fraction=config.decay_fraction,
            )
            set_lr(optimizer, lr)
            loss, grad_norm, loads = _optimizer_step(
                module, model, optimizer, scaler, loader.next_step(), precision, config.grad_clip
            )
            pending.append((step, lr, all_reduce_mean(loss, env), grad_norm))
            done = step + 1
            if window_start is None:  # the first step compiles and warms up: time from its end
                _sync(env.device)
                window_start = time.perf_counter()
            else:
                window_tokens += tokens_per_step
            is_last = done == total
            has_val = val_tokens is not None or val_batches is not None
            wants_eval = has_val and (is_last or (config.eval_every and done % config.eval_every == 0))
            wants_ckpt = checkpointer is not None and (
                is_last or (config.checkpoint_every and done % config.checkpoint_every == 0)
            )
            if done % config.log_every == 0 or is_last or wants_eval or wants_ckpt:
                flushed = _flush(pending, config)
                pending = []
                summary.setdefault("loss_start", flushed[0]["loss"])
                summary["loss_end"] = flushed[-1]["loss"]
                record = flushed[-1]
                _sync(env.device)
                if window_tokens:
                    elapsed = time.perf_counter() - window_start
                    tps = window_tokens / elapsed
                    throughput.append((window_tokens, elapsed))
                    record |= {"tokens_per_s": round(tps, 1), "new_tokens": window_tokens}
                    if flops_per_token:
                        record["mfu"] = _round(mfu(flops_per_token, tps, peak, env.world_size), 4)
                    window_start, window_tokens = time.perf_counter(), 0
                if env.device.type == "cuda":
                    record["memory_bytes"] = torch.cuda.max_memory_allocated(env.device)
                    torch.cuda.reset_peak_memory_stats(env.device)
                if loads:
                    record["expert_load"] = expert_shares(loads)
                if wants_eval:
                    last_val = evaluate(module, _validation(val_tokens, val_batches, config, env), env, precision)
                    record["val_loss"] = round(last_val, 5)
                    module.train()
                records.append(record)
                if env.is_main:
                    if log is not None:
                        log.write(record)
                    _print(progress, console, record, total)
                if wants_ckpt:
                    summary["val_loss"] = last_val
                    extra = {"step": done, "loader": loader.state_dict(), "scaler": scaler.state_dict()}
                    checkpointer.save(done, checkpointed, optimizer, extra | {"summary": summary})
                if wants_eval or wants_ckpt:  # throughput counts training only
                    _sync(env.device)
                    window_start = time.perf_counter()
            if progress is not None:
                progress.update(progress.task_ids[0], completed=done)
    finally:
        if progress is not None:
            progress.stop()
        if checkpointer is not None:
            checkpointer.wait()
    tokens_measured = sum(t for t, _ in throughput)
    tps_all = tokens_measured / sum(s for _, s in throughput) if tokens_measured else None
    return TrainResult(
        steps=total,
        loss_start=summary.get("loss_start"),
        loss_end=summary.get("loss_end"),
        tokens_per_s=tps_all,
        mfu=mfu(flops_per_token, tps_all, peak, env.world_size) if flops_per_token and tps_all else None,
        val_loss=last_val,
        tokens=total * tokens_per_step,
        resumed_from=start or None,
        records=records,
    )


def _optimizer_step(module, model, optimizer, scaler, micro_batches, precision: Precision, grad_clip: float):
    """Forward/backward over the micro-batches (tensors, or dicts of tensors such as input_ids/labels), then clip
    and step. Returns the mean loss, the grad norm (both device tensors) and the MoE expert loads summed over the
    micro-batches."""
    if is_engine(module):
        return engine_step(module, model, micro_batches, precision)
    total = None
    loads: dict[int, torch.Tensor] = {}
    last = len(micro_batches) - 1
    for i, batch in enumerate(micro_batches):
        with set_grad_sync(module, i == last):
            with precision.autocast():
                loss = module(batch)
            scaler.scale(loss / len(micro_batches)).backward()
        total = loss.detach() if total is None else total + loss.detach()
        for layer, load in _expert_load(model).items():
            loads[layer] = loads.get(layer, 0) + load.detach()
    scaler.unscale_(optimizer)
    grad_norm = nn.utils.clip_grad_norm_(module.parameters(), grad_clip, foreach=True)
    if hasattr(grad_norm, "full_tensor"):
        grad_norm = grad_norm.full_tensor()
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    if loads and hasattr(model, "update_router_biases"):
        model.update_router_biases(loads)
    return total / len(micro_batches), grad_norm.detach(), loads


def _expert_load(model: nn.Module) -> dict[int, torch.Tensor]:
    fn = getattr(model, "expert_load", None)
    return fn() if fn is not None else {}


def _flush(pending, config: TrainConfig) -> list[dict[str, Any]]:
    """Bring the pending steps' losses to the host (one sync) and stop on the first non-finite one."""
    losses = torch.stack([p[2] for p in pending]).float().cpu().tolist()
    norms = torch.stack([p[3] for p in pending]).float().cpu().tolist()
    out = []
    for (step, lr, _, _), loss, norm in zip(pending, losses, norms, strict=True):
        # fp16 skips steps with overflowing gradients (the loss scaler's job); a non-finite loss is always fatal.
        if not math.isfinite(loss) or (not math.isfinite(norm) and config.precision != "fp16"):
            raise NonFiniteLossError(
                f"step {step + 1}: loss {loss}, grad norm {norm}; stopping without saving this state. Lower "
                "train.lr or raise warmup_steps, then re-run: training resumes from the last good checkpoint"
            )
        out.append({"step": step + 1, "loss": loss, "lr": lr, "grad_norm": norm})
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


def _validation(tokens: np.ndarray | None, batches: Callable | None, config: TrainConfig, env: DistEnv) -> Iterable:
    """This rank's validation batches: windows of the token split (pretraining), or what `batches()` gives."""
    if tokens is not None:
        return eval_batches(tokens, config.seq_len, config.micro_batch, config.eval_batches, env.rank, env.world_size)
    return batches()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _progress(console: Console, env: DistEnv, total: int, start: int) -> Progress | None:
    if not env.is_main:
        return None
    progress = Progress(
        TextColumn("[bold]train[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
        console=console,
    )
    progress.add_task("train", total=total, completed=start, status="")
    progress.start()
    return progress


def _print(progress: Progress | None, console: Console, record: dict[str, Any], total: int) -> None:
    parts = [f"step {record['step']}/{total}", f"loss {record['loss']:.4f}", f"lr {record['lr']:.2e}"]
    parts.append(f"grad norm {record['grad_norm']:.3f}")
    if "tokens_per_s" in record:
        parts.append(f"{record['tokens_per_s']:,.0f} tok/s")
    if record.get("mfu") is not None:
        parts.append(f"MFU {100 * record['mfu']:.1f}%")
    if "val_loss" in record:
        parts.append(f"val loss {record['val_loss']:.4f}")
    (progress.console if progress else console).print("  ".join(parts))
    if progress is not None:
        progress.update(progress.task_ids[0], status=f"loss {record['loss']:.4f}")


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
