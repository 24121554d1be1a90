"""What the stages that tune an existing model (finetune, align) share: settings when the stage has no `train`
section, the loop over length-bucketed batches with a held-out split, optional adapters, and the export of the result
(the merged model, plus the adapter in PEFT format) from rank 0 after every rank has taken part in gathering it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from llm_platform.api.dag import EXTERNAL
from llm_platform.api.finetune import LoraSpec
from llm_platform.api.train import TrainSpec
from llm_platform.trainer.adapters import (
    LoraConfig,
    apply_lora,
    dequantize_base,
    merge_lora,
    quantize_base,
    save_peft_adapter,
    trainable_parameters,
)
from llm_platform.trainer.data.batching import FinetuneLoader, collate_padded
from llm_platform.trainer.data.sft import FinetuneSteps, validation_batches
from llm_platform.trainer.model import flops_per_token
from llm_platform.trainer.model.hf import save_pretrained
from llm_platform.trainer.model.transformer import Transformer
from llm_platform.trainer.train.config import TrainConfig
from llm_platform.trainer.train.distributed import DistEnv, setup_distributed
from llm_platform.trainer.train.export import full_state_dict, write_generation_files
from llm_platform.trainer.train.loop import train
from llm_platform.trainer.train.loss_curve import FILE as LOSS_CURVE
from llm_platform.trainer.train.loss_curve import plot_loss_curve

from .context import StageContext
from .engine import checkpointer, metrics_log, seed_everything
from .progress import location


@dataclass
class Tuning:
    """What one tuning stage trains and how; the rest is shared."""

    name: str  # for the console
    train: Sequence  # examples or pairs
    val: Sequence
    objective: Callable[[nn.Module, TrainConfig], nn.Module]
    adapters: LoraConfig | None
    epochs: float  # when the stage has no `train` section
    loader: type[FinetuneLoader] = FinetuneLoader
    collate: Callable = collate_padded
    prepare: Callable[[nn.Module, DistEnv], None] | None = None  # after the model is on its device, before training
    quantize_base: bool = False  # QLoRA: the frozen base in NF4 under the adapters
    write_model: Callable[[nn.Module, Path], None] | None = None  # instead of save_pretrained (one process only)
    annotate: Callable[[], dict] | None = None  # more values for each log record (DPO's rewards)


def lora_config(lora: LoraSpec, dora: bool = False) -> LoraConfig:
    """The adapters a stage's `lora` section asks for (the trainer library takes plain settings, not API models)."""
    return LoraConfig(rank=lora.rank, alpha=lora.alpha, dropout=lora.dropout, targets=lora.targets, dora=dora)


def default_settings(lr: float, max_seq_len: int) -> TrainSpec:
    """Training settings for a stage without a `train` section; `steps` is filled in once the data is counted."""
    return TrainSpec.model_construct(seq_len=min(max_seq_len, 2048), micro_batch=8, lr=lr, weight_decay=0.0)


def pad_id(tokenizer) -> int:
    return tokenizer.pad_id if tokenizer.pad_id is not None else (tokenizer.eos_id or 0)


def tune(ctx: StageContext, out: Path, model: nn.Module, tokenizer, settings: TrainSpec, job: Tuning) -> dict:
    """Train `model` on `job`, export it to `out`; returns the metrics."""
    pad = pad_id(tokenizer)
    if settings.context_parallel > 1:
        raise ValueError(
            "train.context_parallel shards pretraining sequences across processes; tuning stages run without it "
            "(set it to 1; activation_checkpointing and activation_offload fit long sequences on one device)"
        )
    if settings.document_masking and job.loader is not FinetuneLoader:
        raise ValueError(
            f"train.document_masking packs fine-tuning examples into rows; {job.name} batches pairs, so leave it off"
        )
    loader = job.loader(
        list(job.train),
        mode="pack" if settings.document_masking else "dynamic",
        seq_len=settings.seq_len + 1,  # inputs and targets are one token apart
        batch_size=settings.micro_batch,
        max_tokens=settings.micro_batch * (settings.seq_len + 1),
        pad_id=pad,
        seed=settings.seed,
        epochs=None,  # the step count decides when to stop
    )
    env = setup_distributed(settings.device)
    steps = FinetuneSteps(loader, settings.grad_accum, env.rank, env.world_size, env.device)
    if ctx.stage.train is None:  # as many steps as `epochs` passes over the data take
        count = max(1, math.ceil(job.epochs * steps.steps_per_epoch()))
        settings = TrainSpec(**{**settings.model_dump(), "steps": count, "warmup_steps": max(1, count // 30)})
    config = TrainConfig.from_dict(settings.model_dump())
    seed_everything(config.seed)
    if job.prepare is not None:
        model.to(env.device)
        job.prepare(model, env)
    if job.quantize_base:
        quantize(model, env)
    if job.adapters is not None:
        apply_lora(model, job.adapters)
    trainable, total = trainable_parameters(model)
    if env.is_main:
        ctx.console.print(
            f"[bold]{job.name}[/]: {len(job.train):,} training items, {trainable / 1e6:.2f}M of {total / 1e6:.1f}M "
            f"parameters trained, {config.steps} steps, {env.world_size} process(es) on {env.device.type}"
        )
    model_dir = out / "model"
    settings_log = {ctx.stage.kind: getattr(ctx.stage, ctx.stage.kind).model_dump(mode="json")}
    log = metrics_log(ctx, config, env, model_dir, {**settings_log, "train": dataclasses.asdict(config)})
    if job.annotate is not None:
        log = AnnotatedLog(log, job.annotate)

    def val_batches() -> list:
        return validation_batches(job.val, config.micro_batch, pad, env.rank, env.world_size, env.device, job.collate)

    try:
        result = train(
            model,
            config,
            steps,
            env,
            objective=job.objective(model, config),
            val_batches=val_batches if job.val else None,
            checkpointer=checkpointer(ctx, config, env),
            log=log,
            console=ctx.console,
            flops_per_token=flops_per_token(model.config, config.seq_len),
        )
    finally:
        log.close()
    if job.write_model is not None:
        if env.world_size > 1:
            raise ValueError(f"{job.name} writes its model from one process; run it on one device")
        job.write_model(model, out / "model")
    else:
        export(model, job.adapters, env, out, base_model=base_model_reference(ctx))
    if env.is_main:
        tokenizer.save(model_dir)
        write_generation_files(model_dir, tokenizer)
        if plot_loss_curve(result.records, model_dir / LOSS_CURVE, f"{ctx.stage.name}: {job.name}") is not None:
            ctx.console.print(f"[bold]{ctx.stage.name}[/]: wrote model/{LOSS_CURVE}")
    return {"trainable_params": trainable, **result.metrics()}


class AnnotatedLog:
    """A metrics log that adds `annotate()`'s values to each record before writing it (the record is updated in
    place, so the loop's own copy, which the loss curve is drawn from, carries them too)."""

    def __init__(self, log, annotate: Callable[[], dict]) -> None:
        self.log = log
        self.annotate = annotate

    def write(self, record: dict) -> None:
        record.update(self.annotate())
        self.log.write(record)

    def __getattr__(self, name: str):
        return getattr(self.log, name)  # the rest (close, on_progress, ...) is the wrapped log's


def base_model_reference(ctx: StageContext) -> str:
    """What an adapter's `base_model_name_or_path` names, so `AutoPeftModelForCausalLM.from_pretrained(adapter/)`
    finds its base: `spec.model.from` as written (a hub id or a path), else the committed `model/` folder of the
    stage this one tuned (a local path on a local store, its URI on S3)."""
    origin = ctx.job.spec.model.from_ if ctx.job.spec.model else None
    source = ctx.sources.get("model")
    if source is None or source == EXTERNAL:
        return str(origin).removeprefix("file://") if origin else "base"
    return location(ctx.store, f"{source}/versions/{ctx.store.manifest(source).version}/model")


def quantize(model: nn.Module, env: DistEnv) -> None:
    """QLoRA's NF4 base, quantised on the training device; bf16 compute on accelerators, fp32 on CPU."""
    if env.world_size > 1:
        raise ValueError(
            "finetune.method: qlora runs in one process (its NF4 base is not sharded); use one device "
            "(train.parallel.strategy: auto with one GPU), or method: lora"
        )
    model.to(env.device)
    quantize_base(model, torch.float32 if env.device.type == "cpu" else torch.bfloat16)


def export(model: nn.Module, adapters: LoraConfig | None, env: DistEnv, out: Path, base_model: str) -> None:
    """Rank 0 writes `adapter/` (PEFT format) and `model/` (adapters merged). Under several processes every rank
    first takes part in gathering the full weights (FSDP shards, ZeRO-3 partitions) into a plain copy on rank 0."""
    if env.world_size > 1:
        state = full_state_dict(model, env)
        if not env.is_main:
            return
        with torch.device("meta"):
            plain = Transformer(model.config)
        if adapters is not None:
            apply_lora(plain, adapters)
        plain.load_state_dict(state, assign=True)
        plain.materialize_non_persistent("cpu")
        if plain.config.tie_embeddings:
            plain.lm_head.weight = plain.embed_tokens.weight
        model = plain
    if adapters is not None:
        save_peft_adapter(model, out / "adapter", base_model=base_model)
        merge_lora(model)
    dequantize_base(model)  # QLoRA: the merged model over the weights it was trained against
    save_pretrained(model, out / "model")
