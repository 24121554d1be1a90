"""Context parallelism on several GPUs of one host (issue 16): the 1B preset trained on 128K-token sequences shared by
the GPUs (`train.context_parallel` = the number of GPUs) under FSDP2, and context-parallel attention checked against
one GPU's attention.

    torchrun --standalone --nproc-per-node=2 bench/context_parallel.py --json context_parallel.json
    torchrun --standalone --nproc-per-node=2 bench/context_parallel.py --tiny     # CPU smoke run on gloo

Phases (rank 0 prints and writes the report)
    check   causal attention at 32K tokens with the preset's heads, bf16: every rank computes the whole sequence
            alone and its context-parallel share; the largest difference of outputs and of q/k/v gradients.
    train   three optimizer steps of the engine's loop at 128K tokens (FSDP2, full activation checkpointing, fused
            loss): tokens/s over the GPUs (the tokens of a sequence count once) and peak memory per GPU, to set beside
            one GPU's row in bench/long_context.py.

This script and what it imports must not need pydantic (the GPU machine has none).
"""

from __future__ import annotations

import argparse
import io
import json

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console

from llm_platform.trainer.data.loader import PretrainLoader
from llm_platform.trainer.model import get_config
from llm_platform.trainer.model.kernels import attention
from llm_platform.trainer.model.transformer import Transformer
from llm_platform.trainer.train.config import ParallelConfig, TrainConfig
from llm_platform.trainer.train.context_parallel import ContextParallel
from llm_platform.trainer.train.distributed import setup_distributed
from llm_platform.trainer.train.loop import train
from llm_platform.trainer.train.objective import NextTokenLoss


def check(cp: ContextParallel, config, seq: int, device) -> dict:
    gen = torch.Generator(device).manual_seed(0)
    shapes = (config.n_heads, config.kv_heads, config.kv_heads, config.n_heads)
    q, k, v, weight = (torch.randn(1, h, seq, config.head_size, device=device, generator=gen) for h in shapes)
    if device.type == "cuda":
        q, k, v = (t.bfloat16() for t in (q, k, v))
    scale = config.head_size**-0.5
    whole = [t.clone().requires_grad_() for t in (q, k, v)]
    reference = attention(*whole, scale=scale, q_positions=torch.arange(seq, device=device))
    (reference.float() * weight).sum().backward()
    index = cp.local_indices(seq, device)
    mine = [t[:, :, index].clone().requires_grad_() for t in (q, k, v)]
    out = cp.attend(*mine, scale=scale)
    (out.float() * weight[:, :, index]).sum().backward()
    diffs = {"out": (out.float() - reference[:, :, index].float()).abs().max().item()}
    for name, part, full in zip("qkv", mine, whole, strict=True):
        diffs[f"grad_{name}"] = (part.grad.float() - full.grad[:, :, index].float()).abs().max().item()
    return {"seq": seq, "max_diff": diffs, "reference_abs_max": reference.float().abs().max().item()}


def train_long(cp: ContextParallel, env, preset: str, seq: int, steps: int) -> dict:
    cuda = env.device.type == "cuda"
    config = TrainConfig(steps=steps, micro_batch=1, seq_len=seq, precision="bf16" if cuda else "fp32",
                         activation_checkpointing="full", context_parallel=cp.size,
                         parallel=ParallelConfig(strategy="fsdp"), log_every=1, warmup_steps=1,
                         device=env.device.type)  # fmt: skip
    torch.manual_seed(0)
    with torch.device(env.device):
        model = Transformer(get_config(preset))
    tokens = np.random.default_rng(0).integers(0, model.config.vocab_size, seq * (steps + 1) + 1).astype(np.uint32)
    data_rank, data_world = env.rank // cp.size, config.data_parallel_size(env.world_size)
    loader = PretrainLoader(tokens, seq, 1, rank=data_rank, world_size=data_world, device=env.device)
    objective = NextTokenLoss(model, fused_loss=cuda, context_parallel=cp)
    if cuda:
        torch.cuda.reset_peak_memory_stats(env.device)
    result = train(model, config, loader, env, objective=objective, console=Console(file=io.StringIO()))
    row = {
        "seq": seq,
        "processes": env.world_size,
        "losses": [round(r["loss"], 4) for r in result.records],
        "tokens_per_s": result.tokens_per_s,
    }
    if cuda:
        peak = torch.tensor(float(torch.cuda.max_memory_allocated(env.device)), device=env.device)
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
        row["peak_gib_per_gpu"] = round(peak.item() / 2**30, 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", type=int, default=131072)
    parser.add_argument("--check-seq", type=int, default=32768)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json")
    parser.add_argument("--tiny", action="store_true", help="llama-tiny at 256 tokens on the CPU (gloo)")
    args = parser.parse_args()
    env = setup_distributed("cpu" if args.tiny else "cuda")
    if env.world_size < 2:
        raise SystemExit("run under torchrun with 2 or more processes: torchrun --standalone --nproc-per-node=2 ...")
    preset, seq, check_seq = ("llama-tiny", 256, 128) if args.tiny else ("llama-1b", args.seq, args.check_seq)
    cp = ContextParallel.create(env.world_size)
    device_name = torch.cuda.get_device_name(env.device) if env.device.type == "cuda" else "cpu"
    report = {"device": device_name, "torch": torch.__version__}
    report["check"] = check(cp, get_config(preset), check_seq, env.device)
    report["train"] = train_long(cp, env, preset, seq, args.steps)
    if env.is_main:
        Console().print(report)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=2)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
