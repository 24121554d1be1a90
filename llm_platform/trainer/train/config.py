"""Training settings as a plain dataclass, so the engine runs without the LLMJob API (pydantic) installed.

The pretrain, finetune and align stages build a `TrainConfig` from their `TrainSpec` with `TrainConfig.from_dict`;
scripts and benchmarks build one directly. This is where each training setting is declared: the API's `TrainSpec`
(validation, CRD schema, reference docs) is generated from these fields, their types and their `setting` metadata.
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, dataclass, field
from typing import Any, Literal, get_args

Schedule = Literal["cosine", "linear", "wsd", "constant"]
Precision = Literal["fp32", "bf16", "fp16"]
OptimizerName = Literal["adamw", "adamw8bit", "paged_adamw8bit"]
ActivationCheckpointing = Literal["none", "full", "selective"]
Strategy = Literal["auto", "ddp", "fsdp", "deepspeed"]
Launcher = Literal["torchrun", "ray"]
Device = Literal["auto", "cpu", "cuda"]


def setting(default: Any = MISSING, *, description: str | None = None, **bounds: Any) -> Any:
    """A field with what the LLMJob API shows and checks for it: `description`, and bounds (`ge`, `le`, `gt`, `lt`,
    `pattern`) as pydantic names them. The API's `TrainSpec` is generated from these dataclasses, so each setting is
    declared here once; this module itself needs nothing beyond the standard library."""
    meta = {k: v for k, v in {"description": description, **bounds}.items() if v is not None}
    if isinstance(default, type):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ParallelConfig:
    """How the work is spread; the operator renders it into a PyTorchJob (torchrun) or a RayJob (Ray Train)."""

    strategy: Strategy = setting("auto", description="auto: single process on one device, DDP on several.")
    nodes: int = setting(1, ge=1, le=1024)
    gpus_per_node: int = setting(0, ge=0, le=16, description="0 runs on CPU.")
    zero_stage: Literal[1, 2, 3] = setting(2, description="DeepSpeed ZeRO stage (strategy: deepspeed only).")
    launcher: Launcher = setting("torchrun", description="torchrun: PyTorchJob; ray: RayJob + Ray Train.")


@dataclass
class TrainConfig:
    """How to train. `steps` (or `tokens` / tokens per step) bounds the run; `micro_batch` is per process."""

    steps: int | None = setting(None, ge=1, le=10**10, description="Optimizer steps. Give `steps` or `tokens`.")
    tokens: float | None = setting(None, gt=0, le=1e16, description="Training tokens; steps = tokens / (batch tokens).")
    micro_batch: int = setting(8, ge=1, le=65536, description="Sequences per device per forward pass.")
    grad_accum: int = setting(1, ge=1, le=65536, description="Micro-batches accumulated per optimizer step.")
    seq_len: int = setting(2048, ge=8, le=1_048_576, description="Tokens per training sequence.")
    lr: float = setting(3e-4, gt=0, lt=1, description="Peak learning rate.")
    min_lr_ratio: float = setting(0.1, ge=0, le=1, description="Final learning rate as a fraction of `lr`.")
    warmup_steps: int = setting(100, ge=0, le=10**10, description="Steps of linear warm-up; at most `steps`.")
    schedule: Schedule = "cosine"
    decay_fraction: float = setting(
        0.2, gt=0, le=1, description="wsd only: fraction of the steps spent decaying to min_lr_ratio at the end."
    )
    weight_decay: float = setting(0.1, ge=0, le=10)
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = setting(1.0, gt=0, le=1e6)
    optimizer: OptimizerName = setting(
        "adamw",
        description="adamw8bit: 8-bit optimizer state (bitsandbytes on CUDA, blockwise-quantized elsewhere); "
        "paged_adamw8bit: bitsandbytes' paged 8-bit AdamW, whose state moves to host memory under GPU memory "
        "pressure (CUDA and the gpu extra only).",
    )
    z_loss: float = setting(
        0.0, ge=0, le=1, description="Weight of the z-loss, mean(logsumexp(logits)^2); 1e-4 is common."
    )
    precision: Precision = setting("bf16", description="bf16/fp16 autocast; fp32 on CPU.")
    fp8: bool = setting(False, description="FP8 matmuls through torchao float8 (H100/H200 class GPUs).")
    activation_checkpointing: ActivationCheckpointing = setting(
        "none", description="Recompute blocks in the backward pass: all ops (full) or all but matmuls (selective)."
    )
    compile: bool = setting(False, description="torch.compile the model (per block under FSDP).")
    activation_offload: bool = setting(
        False,
        description="Keep activations saved for the backward pass in pinned CPU memory (long sequences on one GPU).",
    )
    document_masking: bool = setting(
        False,
        description="Attention stays inside each document: pretraining windows split at the end-of-sequence token; "
        "fine-tuning packs examples into rows of seq_len, each masked to itself.",
    )
    reset_positions: bool = setting(
        False, description="With document_masking: rotary positions restart at 0 at every document."
    )
    context_parallel: int = setting(
        1,
        ge=1,
        le=1024,
        description="Processes that share each sequence (load-balanced all-gather attention); divides the world "
        "size, and 2 x context_parallel divides seq_len.",
    )
    seed: int = setting(0, ge=0, le=2**32 - 1)
    log_every: int = setting(10, ge=1, le=10**10)
    eval_every: int = setting(
        0, ge=0, le=10**10, description="Evaluate validation loss every N steps (0: only at the end)."
    )
    eval_batches: int = setting(8, ge=1, le=1_000_000)
    checkpoint_every: int = setting(0, ge=0, le=10**10, description="Checkpoint every N steps (0: only at the end).")
    keep_checkpoints: int = setting(2, ge=1, le=1000)
    async_checkpoint: bool = setting(False, description="Write and upload checkpoints in the background.")
    device: Device = "auto"
    tensorboard: bool = setting(False, description="Also write TensorBoard event files beside train_log.jsonl.")
    wandb_project: str | None = setting(
        None, pattern=r"^[A-Za-z0-9_.-]{1,128}$", description="Log to this Weights & Biases project (needs `wandb`)."
    )
    metrics_port: int | None = setting(
        None, ge=1, le=65535, description="Serve Prometheus metrics on this port (rank 0)."
    )
    parallel: ParallelConfig = setting(ParallelConfig)

    def __post_init__(self) -> None:
        for name, choices in (
            ("schedule", Schedule),
            ("precision", Precision),
            ("optimizer", OptimizerName),
            ("activation_checkpointing", ActivationCheckpointing),
        ):
            if getattr(self, name) not in get_args(choices):
                raise ValueError(f"train.{name}: {getattr(self, name)!r} is not one of {list(get_args(choices))}")
        if self.parallel.strategy not in get_args(Strategy):
            raise ValueError(
                f"train.parallel.strategy: {self.parallel.strategy!r} is not one of {list(get_args(Strategy))}"
            )
        if (self.steps is None) == (self.tokens is None):
            raise ValueError("train: give exactly one of `steps` or `tokens` to say how long to train")
        problem = long_context_problem(self)
        if problem:
            raise ValueError(f"train.{problem}")
        self.betas = tuple(self.betas)

    def data_parallel_size(self, world_size: int) -> int:
        """Processes that read different sequences (each group of `context_parallel` shares one)."""
        return world_size // self.context_parallel

    def tokens_per_step(self, world_size: int) -> int:
        return self.micro_batch * self.grad_accum * self.seq_len * self.data_parallel_size(world_size)

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


def long_context_problem(config: TrainConfig) -> str | None:
    """What is wrong with the document-masking and context-parallel settings together, as `field: message`."""
    if config.reset_positions and not config.document_masking:
        return "reset_positions: positions restart at document boundaries; set document_masking: true as well"
    cp = config.context_parallel
    if cp > 1:
        if config.document_masking:
            return "context_parallel: not with document_masking (shards split documents); set one of them"
        if config.parallel.strategy == "deepspeed":
            return "context_parallel: runs under parallel.strategy ddp or fsdp, not deepspeed; change one of them"
        if config.seq_len % (2 * cp):
            return (
                f"context_parallel: seq_len {config.seq_len} must be a multiple of 2 x context_parallel = {2 * cp} "
                "(each process holds two equal chunks); change one of them"
            )
    return None


def world_size_problem(config: TrainConfig, world_size: int) -> str | None:
    """Why this world size cannot run `config`, or None."""
    if world_size % config.context_parallel:
        return (
            f"train.context_parallel: {config.context_parallel} does not divide the {world_size} process(es); "
            "use a divisor of the world size"
        )
    return None
