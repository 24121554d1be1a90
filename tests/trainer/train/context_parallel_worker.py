"""Run under torchrun with 2 processes on gloo: context-parallel attention and a model's loss and gradients against
the same computation on one process; writes the largest differences to --out/rank<r>.json."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from llm_platform.trainer.data.loader import PretrainLoader
from llm_platform.trainer.model import get_config
from llm_platform.trainer.model.kernels import attention
from llm_platform.trainer.model.transformer import Transformer
from llm_platform.trainer.train.config import ParallelConfig, TrainConfig
from llm_platform.trainer.train.context_parallel import ContextParallel
from llm_platform.trainer.train.distributed import DistEnv
from llm_platform.trainer.train.loop import train
from llm_platform.trainer.train.objective import NextTokenLoss


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def attention_errors(cp: ContextParallel, kv_heads: int, window: int | None) -> dict[str, float]:
    gen = torch.Generator().manual_seed(kv_heads * 100 + (window or 0))
    seq = 32
    q = torch.randn(2, 4, seq, 8, generator=gen)
    k = torch.randn(2, kv_heads, seq, 8, generator=gen)
    v = torch.randn(2, kv_heads, seq, 8, generator=gen)
    weight = torch.randn(2, 4, seq, 8, generator=gen)
    full = [t.clone().requires_grad_() for t in (q, k, v)]
    reference = attention(*full, scale=0.3, q_positions=torch.arange(seq), window=window)
    (reference * weight).sum().backward()

    index = cp.local_indices(seq)
    local = [t[:, :, index].clone().requires_grad_() for t in (q, k, v)]
    out = cp.attend(*local, scale=0.3, window=window)
    (out * weight[:, :, index]).sum().backward()
    errors = {"out": _diff(out, reference[:, :, index])}
    for name, mine, whole in zip("qkv", local, full, strict=True):
        errors[f"grad_{name}"] = _diff(mine.grad, whole.grad[:, :, index])
    return errors


def model_errors(cp: ContextParallel) -> dict[str, float]:
    torch.manual_seed(0)
    model = Transformer(get_config("llama-tiny"))
    batch = torch.randint(0, 512, (2, 65), generator=torch.Generator().manual_seed(1))
    NextTokenLoss(model)(batch).backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        reference_loss = NextTokenLoss(model)(batch)
    model.zero_grad()

    objective = NextTokenLoss(model, context_parallel=cp)
    loss = objective(batch)
    loss.backward()
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    errors = {"loss": abs(mean_loss.item() / cp.size - reference_loss.item())}
    worst = 0.0
    for name, p in model.named_parameters():
        grad = p.grad.clone()
        dist.all_reduce(grad)  # what the data-parallel average does
        worst = max(worst, _diff(grad / cp.size, reference[name]))
    errors["grads"] = worst
    objective.eval()
    with torch.no_grad():
        errors["eval_loss"] = abs(objective(batch).item() - reference_loss.item())
    return errors


def training_losses(env: DistEnv, context_parallel: ContextParallel | None) -> list[float]:
    """Three optimizer steps of the engine's loop (FSDP2 over the context-parallel group, or one process)."""
    size = context_parallel.size if context_parallel else 1
    config = TrainConfig(steps=3, micro_batch=2, seq_len=32, lr=1e-3, warmup_steps=1, precision="fp32", device="cpu",
                         log_every=1, context_parallel=size,
                         parallel=ParallelConfig(strategy="fsdp" if size > 1 else "auto"))  # fmt: skip
    tokens = np.random.default_rng(0).integers(0, 512, 4000).astype(np.uint16)
    torch.manual_seed(0)
    model = Transformer(get_config("llama-tiny"))
    loader = PretrainLoader(tokens, 32, 2, rank=env.rank // size, world_size=config.data_parallel_size(env.world_size))
    objective = NextTokenLoss(model, context_parallel=context_parallel)
    result = train(model, config, loader, env, objective=objective)
    return [r["loss"] for r in result.records]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    dist.init_process_group("gloo")
    torch.use_deterministic_algorithms(True)
    cp = ContextParallel.create(dist.get_world_size())
    result = {
        "mha": attention_errors(cp, kv_heads=4, window=None),
        "gqa_window": attention_errors(cp, kv_heads=2, window=5),
        "model": model_errors(cp),
    }
    env = DistEnv(dist.get_rank(), dist.get_world_size(), dist.get_rank(), dist.get_world_size())
    result["losses"] = training_losses(env, cp)
    Path(args.out, f"rank{dist.get_rank()}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
