"""Training hyperparameters shared by `pretrain`, `finetune` and `align` stages."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import SpecModel


class ParallelSpec(SpecModel):
    """How the work is spread; the operator renders it into a PyTorchJob (torchrun) or a RayJob (Ray Train)."""

    strategy: Literal["auto", "ddp", "fsdp", "deepspeed"] = Field(
        "auto", description="auto: single process on one device, DDP on several."
    )
    nodes: int = Field(1, ge=1, le=1024)
    gpus_per_node: int = Field(0, ge=0, le=16, description="0 runs on CPU.")
    zero_stage: Literal[1, 2, 3] = Field(2, description="DeepSpeed ZeRO stage (strategy: deepspeed only).")
    launcher: Literal["torchrun", "ray"] = Field(
        "torchrun", description="torchrun: PyTorchJob; ray: RayJob + Ray Train."
    )


class TrainSpec(SpecModel):
    steps: int | None = Field(None, ge=1, le=10**10, description="Optimizer steps. Give `steps` or `tokens`.")
    tokens: float | None = Field(None, gt=0, le=1e16, description="Training tokens; steps = tokens / (batch tokens).")
    micro_batch: int = Field(8, ge=1, le=65536, description="Sequences per device per forward pass.")
    grad_accum: int = Field(1, ge=1, le=65536, description="Micro-batches accumulated per optimizer step.")
    seq_len: int = Field(2048, ge=8, le=1_048_576, description="Tokens per training sequence.")
    lr: float = Field(3e-4, gt=0, lt=1, description="Peak learning rate.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final learning rate as a fraction of `lr`.")
    warmup_steps: int = Field(100, ge=0, le=10**10, description="Steps of linear warm-up; at most `steps`.")
    schedule: Literal["cosine", "linear", "wsd", "constant"] = "cosine"
    decay_fraction: float = Field(
        0.2, gt=0, le=1, description="wsd only: fraction of the steps spent decaying to min_lr_ratio at the end."
    )
    weight_decay: float = Field(0.1, ge=0, le=10)
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = Field(1.0, gt=0, le=1e6)
    optimizer: Literal["adamw", "adamw8bit"] = Field(
        "adamw", description="adamw8bit: 8-bit optimizer state (bitsandbytes on CUDA, blockwise-quantized elsewhere)."
    )
    z_loss: float = Field(
        0.0, ge=0, le=1, description="Weight of the z-loss, mean(logsumexp(logits)^2); 1e-4 is common."
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field("bf16", description="bf16/fp16 autocast; fp32 on CPU.")
    fp8: bool = Field(False, description="FP8 matmuls through torchao float8 (H100/H200 class GPUs).")
    activation_checkpointing: Literal["none", "full", "selective"] = Field(
        "none", description="Recompute blocks in the backward pass: all ops (full) or all but matmuls (selective)."
    )
    compile: bool = Field(False, description="torch.compile the model (per block under FSDP).")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    log_every: int = Field(10, ge=1, le=10**10)
    eval_every: int = Field(
        0, ge=0, le=10**10, description="Evaluate validation loss every N steps (0: only at the end)."
    )
    eval_batches: int = Field(8, ge=1, le=1_000_000)
    checkpoint_every: int = Field(0, ge=0, le=10**10, description="Checkpoint every N steps (0: only at the end).")
    keep_checkpoints: int = Field(2, ge=1, le=1000)
    async_checkpoint: bool = Field(False, description="Write and upload checkpoints in the background.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    tensorboard: bool = Field(False, description="Also write TensorBoard event files beside train_log.jsonl.")
    wandb_project: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]{1,128}$", description="Log to this Weights & Biases project (needs `wandb`)."
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Serve Prometheus metrics on this port (rank 0)."
    )
    parallel: ParallelSpec = Field(default_factory=ParallelSpec)

    @model_validator(mode="after")
    def _length(self) -> TrainSpec:
        if (self.steps is None) == (self.tokens is None):
            raise ValueError("give exactly one of `steps` or `tokens` to say how long to train")
        if self.betas[0] >= 1 or self.betas[1] >= 1 or min(self.betas) < 0:
            raise ValueError(f"`betas` must lie in [0, 1), got {list(self.betas)}")
        if self.steps is not None and "warmup_steps" in self.model_fields_set and self.warmup_steps > self.steps:
            raise ValueError(f"`warmup_steps` ({self.warmup_steps}) is more than `steps` ({self.steps}); lower it")
        return self
