"""Training settings as a plain dataclass, so the engine runs without the LLMJob API (pydantic) installed.

The pretrain, finetune and align stages build a `TrainConfig` from their `TrainSpec` with `TrainConfig.from_dict`;
scripts and benchmarks build one directly. Field names and defaults match `llm_platform.api.train.TrainSpec`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SCHEDULES = ("cosine", "linear", "wsd", "constant")
PRECISIONS = ("fp32", "bf16", "fp16")
OPTIMIZERS = ("adamw", "adamw8bit")
ACTIVATION_CHECKPOINTING = ("none", "full", "selective")
STRATEGIES = ("auto", "ddp", "fsdp", "deepspeed")


@dataclass
class ParallelConfig:
    strategy: str = "auto"
    nodes: int = 1
    gpus_per_node: int = 0
    zero_stage: int = 2
    launcher: str = "torchrun"


@dataclass
class TrainConfig:
    """How to train. `steps` (or `tokens` / tokens per step) bounds the run; `micro_batch` is per process."""

    steps: int | None = None
    tokens: float | None = None
    micro_batch: int = 8
    grad_accum: int = 1
    seq_len: int = 2048
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    schedule: str = "cosine"
    decay_fraction: float = 0.2
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    optimizer: str = "adamw"
    z_loss: float = 0.0
    precision: str = "bf16"
    fp8: bool = False
    activation_checkpointing: str = "none"
    compile: bool = False
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0
    eval_batches: int = 8
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    async_checkpoint: bool = False
    device: str = "auto"
    tensorboard: bool = False
    wandb_project: str | None = None
    metrics_port: int | None = None
    parallel: ParallelConfig = field(default_factory=ParallelConfig)

    def __post_init__(self) -> None:
        for name, choices in (
            ("schedule", SCHEDULES),
            ("precision", PRECISIONS),
            ("optimizer", OPTIMIZERS),
            ("activation_checkpointing", ACTIVATION_CHECKPOINTING),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(f"train.{name}: {getattr(self, name)!r} is not one of {list(choices)}")
        if self.parallel.strategy not in STRATEGIES:
            raise ValueError(f"train.parallel.strategy: {self.parallel.strategy!r} is not one of {list(STRATEGIES)}")
        if (self.steps is None) == (self.tokens is None):
            raise ValueError("train: give exactly one of `steps` or `tokens` to say how long to train")
        self.betas = tuple(self.betas)

    def tokens_per_step(self, world_size: int) -> int:
        return self.micro_batch * self.grad_accum * self.seq_len * world_size

    def total_steps(self, world_size: int) -> int:
        if self.steps is not None:
            return self.steps
        return max(1, int(self.tokens // self.tokens_per_step(world_size)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a spec dump; keys this engine does not know are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; known: {sorted(known)}")
        data = dict(data)
        if isinstance(data.get("parallel"), dict):
            data["parallel"] = ParallelConfig(**data["parallel"])
        return cls(**data)
