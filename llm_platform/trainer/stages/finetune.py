"""The `finetune` stage: supervised fine-tuning of a model (from an earlier stage or `spec.model.from`) on JSONL
examples, full or with LoRA / DoRA adapters, through the same engine as pretraining.

Writes `model/` (the fine-tuned model in HF format, adapters merged, with the tokenizer and the training log) and,
for adapter methods, `adapter/` (a PEFT adapter folder: `PeftModel.from_pretrained(base, adapter/)` loads it).
Checkpoints and resume work as in pretraining (keyed by the stage fingerprint).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from llm_platform.api.train import TrainSpec
from llm_platform.trainer.adapters import LoraConfig, apply_lora, merge_lora, save_peft_adapter, trainable_parameters
from llm_platform.trainer.data.batching import FinetuneLoader
from llm_platform.trainer.data.sft import FinetuneSteps, load_sft_data, validation_batches
from llm_platform.trainer.model import flops_per_token
from llm_platform.trainer.model.hf import load_pretrained, save_pretrained
from llm_platform.trainer.model.transformer import Transformer
from llm_platform.trainer.tokenizer import Tokenizer
from llm_platform.trainer.train.config import TrainConfig
from llm_platform.trainer.train.distributed import DistEnv, setup_distributed
from llm_platform.trainer.train.export import full_state_dict
from llm_platform.trainer.train.loop import train
from llm_platform.trainer.train.objective import NextTokenLoss

from .context import StageContext
from .engine import checkpointer, metrics_log, seed_everything

# settings when the stage has no `train` section: the usual starting points for adapters and for full fine-tuning
ADAPTER_LR, FULL_LR = 2e-4, 2e-5


def run(ctx: StageContext, out: Path) -> dict:
    spec = ctx.stage.finetune
    base_dir = ctx.input("model")
    tokenizer = Tokenizer.load(base_dir)
    model = load_pretrained(base_dir)
    settings = ctx.stage.train or default_settings(spec.method, model.config.max_seq_len)
    data = load_sft_data(
        tokenizer,
        spec.dataset.path,
        spec.dataset.format,
        max_len=settings.seq_len,
        mask_prompt=spec.mask_prompt,
        prompt_field=spec.dataset.prompt_field,
        response_field=spec.dataset.response_field,
        max_examples=spec.dataset.max_examples,
        val_fraction=spec.val_fraction,
    )
    loader = FinetuneLoader(
        data.train,
        mode="dynamic",
        max_tokens=settings.micro_batch * (settings.seq_len + 1),
        pad_id=_pad_id(tokenizer),
        seed=settings.seed,
        epochs=None,  # the step count decides when to stop
    )
    env = setup_distributed(settings.device)
    steps = FinetuneSteps(loader, settings.grad_accum, env.rank, env.world_size, env.device)
    if ctx.stage.train is None:  # as many steps as `finetune.epochs` passes over the examples take
        count = max(1, math.ceil(spec.epochs * steps.steps_per_epoch()))
        settings = TrainSpec(**{**settings.model_dump(), "steps": count, "warmup_steps": max(1, count // 30)})
    config = TrainConfig.from_dict(settings.model_dump())
    seed_everything(config.seed)
    adapters = adapter_config(spec)
    if adapters is not None:
        apply_lora(model, adapters)
    trainable, total = trainable_parameters(model)
    if env.is_main:
        ctx.console.print(
            f"[bold]finetune[/] ({spec.method}): {data.summary()['train_examples']:,} examples, "
            f"{trainable / 1e6:.2f}M of {total / 1e6:.1f}M parameters trained, {config.steps} steps, "
            f"{env.world_size} process(es) on {env.device.type}"
        )
    model_dir = out / "model"
    settings = {
        "finetune": spec.model_dump(mode="json"),
        "train": dataclasses.asdict(config),
        "model": model.config.to_dict(),
    }
    log = metrics_log(ctx, config, env, model_dir, settings)
    checkpoints = checkpointer(ctx, config, env)

    def val_batches() -> list:
        return validation_batches(
            data.val, config.micro_batch, _pad_id(tokenizer), env.rank, env.world_size, env.device
        )

    try:
        result = train(
            model,
            config,
            steps,
            env,
            objective=NextTokenLoss(model, config.z_loss),
            val_batches=val_batches,
            checkpointer=checkpoints,
            log=log,
            console=ctx.console,
            flops_per_token=flops_per_token(model.config, config.seq_len),
        )
    finally:
        log.close()
    export_finetuned(model, adapters, env, out, base_model=str(ctx.job.spec.model.from_ or base_dir.name))
    if env.is_main:
        tokenizer.save(model_dir)
    return {**data.summary(), "trainable_params": trainable, **result.metrics()}


def export_finetuned(model, adapters: LoraConfig | None, env: DistEnv, out: Path, base_model: str) -> None:
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
    save_pretrained(model, out / "model")


def adapter_config(spec) -> LoraConfig | None:
    if spec.method == "full":
        return None
    lora = spec.lora
    return LoraConfig(
        rank=lora.rank, alpha=lora.alpha, dropout=lora.dropout, targets=lora.targets, dora=spec.method == "dora"
    )


def default_settings(method: str, max_seq_len: int) -> TrainSpec:
    """Training settings for a stage without a `train` section; `steps` is filled in once the data is counted."""
    return TrainSpec.model_construct(
        seq_len=min(max_seq_len, 2048),
        micro_batch=8,
        lr=FULL_LR if method == "full" else ADAPTER_LR,
        weight_decay=0.0,
    )


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_id if tokenizer.pad_id is not None else (tokenizer.eos_id or 0)
