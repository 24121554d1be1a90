"""Training metrics: MFU, and the sinks every log record goes to (JSONL, console, TensorBoard, W&B, Prometheus).

A log record is a flat dict (step, loss, lr, grad_norm, tokens_per_s, mfu, memory_bytes, expert_load, ...); each sink
takes the same dict, so the JSONL file, the dashboards and the console never disagree.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

# Dense (no sparsity) peak matmul throughput per device in FLOP/s, bf16/fp16 tensor cores, from vendor datasheets.
PEAK_FLOPS = {
    "H200": 989.5e12,
    "H100": 989.5e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
}


def peak_flops(device: torch.device) -> float | None:
    """The device's peak FLOP/s for MFU: `LLMP_PEAK_FLOPS` if set, else by GPU name; None on CPU or unknown GPUs."""
    if os.environ.get("LLMP_PEAK_FLOPS"):
        return float(os.environ["LLMP_PEAK_FLOPS"])
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_FLOPS.items() if key in name), None)


def mfu(flops_per_token: float, tokens_per_s: float, peak: float | None, devices: int) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s over the devices' summed peak (PaLM's definition)."""
    if not peak:
        return None
    return flops_per_token * tokens_per_s / (peak * devices)


def expert_shares(loads: dict[int, torch.Tensor]) -> dict[int, list[float]]:
    """Tokens per expert per MoE layer as shares of that layer's routed tokens (1/n_experts each when balanced)."""
    out = {}
    for layer, load in loads.items():
        load = load.detach().float().cpu()
        out[layer] = [round(v, 4) for v in (load / load.sum().clamp(min=1)).tolist()]
    return out


class MetricsLog:
    """Writes records to `log_dir/train_log.jsonl`, and optionally TensorBoard, W&B and a Prometheus endpoint."""

    def __init__(
        self,
        log_dir: Path | None,
        *,
        tensorboard: bool = False,
        wandb_project: str | None = None,
        metrics_port: int | None = None,
        run_name: str = "train",
        job: str = "local",
        stage: str = "train",
        config: dict[str, Any] | None = None,
        on_progress: Callable[[int, int | None], None] | None = None,
    ) -> None:
        self.on_progress = on_progress  # hears (step, total steps) from the training loop, e.g. a live status file
        self.jsonl = None
        self.tb = None
        self.wandb = None
        self.prometheus = None
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            self.jsonl = (log_dir / "train_log.jsonl").open("a")
        if tensorboard:
            self.tb = _tensorboard_writer(log_dir / "tensorboard" if log_dir else Path("tensorboard"))
        if wandb_project:
            self.wandb = _import_optional("wandb", "train.wandb_project", "pip install wandb")
            self.wandb.init(project=wandb_project, name=run_name, config=config or {}, resume="allow")
        if metrics_port is not None:
            from llm_platform.observability.training import TrainingMetrics

            self.prometheus = TrainingMetrics(job, stage)
            self.prometheus.serve(metrics_port)

    def write(self, record: dict[str, Any]) -> None:
        if self.jsonl is not None:
            self.jsonl.write(json.dumps({k: v for k, v in record.items() if k != "new_tokens"}) + "\n")
            self.jsonl.flush()
        step = record.get("step", 0)
        scalars = {k: v for k, v in record.items() if isinstance(v, int | float) and k not in ("step", "new_tokens")}
        if self.tb is not None:
            for key, value in scalars.items():
                self.tb.add_scalar(f"train/{key}", value, step)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)
        if self.prometheus is not None:
            self.prometheus.update(record)

    def close(self) -> None:
        if self.jsonl is not None:
            self.jsonl.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def _tensorboard_writer(folder: Path):
    """torch's SummaryWriter needs the `tensorboard` package; tensorboardX writes the same event files."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        SummaryWriter = _import_optional("tensorboardX", "train.tensorboard", "pip install tensorboard").SummaryWriter
    return SummaryWriter(str(folder))


def _import_optional(module: str, field: str, how: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{field} needs the '{module}' package, which is not installed: {how}") from e
