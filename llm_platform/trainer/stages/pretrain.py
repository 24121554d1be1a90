"""The `pretrain` stage: a new model from `spec.model`, trained on the packed token files, exported in HF format.

Writes `model/` (config.json, model.safetensors, tokenizer files, train_log.jsonl, loss_curve.png). Checkpoints go to
the store under `<stage>/checkpoints/<fingerprint>/`, so re-running the stage after a crash resumes from the newest
one, and a changed spec (a new fingerprint) starts afresh instead of resuming a stale run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from llm_platform.trainer.data.loader import PretrainLoader
from llm_platform.trainer.data.pack import open_split
from llm_platform.trainer.model import flops_per_token, get_config, num_params
from llm_platform.trainer.model.config import ModelConfig
from llm_platform.trainer.model.transformer import Transformer
from llm_platform.trainer.tokenizer import Tokenizer
from llm_platform.trainer.train.config import TrainConfig, world_size_problem
from llm_platform.trainer.train.context_parallel import ContextParallel
from llm_platform.trainer.train.distributed import setup_distributed
from llm_platform.trainer.train.export import export_pretrained, write_generation_files
from llm_platform.trainer.train.loop import train
from llm_platform.trainer.train.loss_curve import FILE as LOSS_CURVE
from llm_platform.trainer.train.loss_curve import plot_loss_curve
from llm_platform.trainer.train.objective import NextTokenLoss

from .context import StageContext
from .engine import checkpointer, metrics_log, seed_everything


def run(ctx: StageContext, out: Path) -> dict:
    config = TrainConfig.from_dict(ctx.stage.train.model_dump())
    tokens_dir = ctx.input("tokens")
    meta = json.loads((tokens_dir / "meta.json").read_text())
    model_config = build_model_config(ctx, meta["vocab_size"], config.seq_len)
    env = setup_distributed(config.device)
    seed_everything(config.seed)
    model = Transformer(model_config)
    context_parallel = None
    if config.context_parallel > 1:
        problem = world_size_problem(config, env.world_size)
        if problem:
            raise ValueError(problem)
        context_parallel = ContextParallel.create(config.context_parallel)
    loader = PretrainLoader(  # the processes sharing a sequence read the same data
        open_split(tokens_dir, "train"),
        config.seq_len,
        config.micro_batch,
        config.grad_accum,
        env.rank // config.context_parallel,
        config.data_parallel_size(env.world_size),
        config.seed,
        env.device,
    )
    val = _val_split(tokens_dir, config.seq_len, env.world_size)
    if val is None and env.is_main:
        ctx.console.print("[yellow]pretrain[/]: the validation split is too short for one window; no val_loss")
    if env.is_main:
        ctx.console.print(
            f"[bold]pretrain[/]: {num_params(model_config) / 1e6:.1f}M parameters, "
            f"{config.total_steps(env.world_size)} steps x {config.tokens_per_step(env.world_size):,} tokens, "
            f"{env.world_size} process(es) on {env.device.type}"
        )
    model_dir = out / "model"
    settings = {"train": ctx.stage.train.model_dump(mode="json"), "model": model_config.to_dict()}
    log = metrics_log(ctx, config, env, model_dir, settings)
    checkpoints = checkpointer(ctx, config, env)
    try:
        result = train(
            model,
            config,
            loader,
            env,
            val_tokens=val,
            objective=objective(model, config, env, meta["eos_id"], context_parallel),
            checkpointer=checkpoints,
            log=log,
            console=ctx.console,
            flops_per_token=flops_per_token(model_config, config.seq_len),
        )
    finally:
        log.close()
    export_pretrained(model, env, model_dir)
    if env.is_main:
        tokenizer = Tokenizer.load(ctx.input("tokenizer"))
        tokenizer.save(model_dir)
        write_generation_files(model_dir, tokenizer)
        if plot_loss_curve(result.records, model_dir / LOSS_CURVE, f"{ctx.stage.name}: pretraining") is not None:
            ctx.console.print(f"[bold]pretrain[/]: wrote model/{LOSS_CURVE}")
    return {"params": num_params(model_config), **result.metrics()}


def objective(model: Transformer, config: TrainConfig, env, eos_id: int, context_parallel=None) -> NextTokenLoss:
    """The next-token loss, with document masks at the end-of-sequence token when `train.document_masking` asks,
    over this process's shard of each sequence under `train.context_parallel`."""
    return NextTokenLoss(
        model,
        config.z_loss,
        fused_loss=env.device.type == "cuda",
        eos_id=eos_id if config.document_masking else None,
        reset_positions=config.reset_positions,
        context_parallel=context_parallel,
        offload_activations=config.activation_offload,
    )


def build_model_config(ctx: StageContext, vocab_size: int, seq_len: int) -> ModelConfig:
    """The preset with the job's overrides, the tokenizer's vocabulary, and room for `train.seq_len` positions."""
    spec = ctx.job.spec.model
    if spec is None or spec.preset is None:
        raise ValueError(f"stage '{ctx.stage.name}' pretrains a new model: set spec.model.preset (e.g. llama-125m)")
    overrides = dict(spec.overrides)
    if overrides.get("vocab_size", vocab_size) != vocab_size:
        raise ValueError(
            f"spec.model.overrides.vocab_size={overrides['vocab_size']} differs from the tokenizer's {vocab_size}; "
            "remove the override (pretraining takes the tokenizer's vocabulary size)"
        )
    overrides["vocab_size"] = vocab_size
    config = get_config(spec.preset, **overrides)
    if config.max_seq_len < seq_len:
        config = get_config(spec.preset, **{**overrides, "max_seq_len": seq_len})
    return config


def _val_split(tokens_dir: Path, seq_len: int, world_size: int) -> np.ndarray | None:
    """The validation tokens, or None when there are too few for one window per process."""
    try:
        tokens = open_split(tokens_dir, "val")
    except FileNotFoundError:
        return None
    return tokens if (len(tokens) - 1) // seq_len >= world_size else None
