"""QLoRA against LoRA on one CUDA GPU (issue 15): peak memory and step time of adapter training on a 1B model.

Llama 3.2 1B's shape (`llama-1b`, random weights), bf16 base, rank-16 adapters on every linear layer but the head,
AdamW on the adapters, `--batch` x `--seq` tokens per step, no activation checkpointing, eager. LoRA keeps the base in
bf16; QLoRA holds it in NF4 (ours, pure PyTorch: dequantised per matmul) with bf16 compute. Printed per method:
base weight bytes, peak allocated memory over the timed steps, ms/step and tokens/s, then the QLoRA/LoRA ratios.

    PYTHONPATH=. python3 bench/qlora.py
    PYTHONPATH=. python3 bench/qlora.py --device cpu --preset llama-tiny --batch 2 --seq 64 --steps 2   # smoke test
"""

from __future__ import annotations

import argparse
import gc
import time

import torch
from torch.nn import functional as F

from llm_platform.trainer.adapters import LoraConfig, apply_lora, quantize_base
from llm_platform.trainer.model import get_config
from llm_platform.trainer.model.transformer import Transformer


def base_bytes(model: torch.nn.Module) -> int:
    frozen = [t for t in model.parameters() if not t.requires_grad] + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in {id(t): t for t in frozen}.values())


def run(method: str, args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    with torch.device(device):
        model = Transformer(get_config(args.preset))
    model.init_weights(seed=0)
    model.to(torch.bfloat16)
    if method == "qlora":
        quantize_base(model, torch.bfloat16)
    apply_lora(model, LoraConfig(rank=16, alpha=32, targets="all-linear"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.seq + 1), device=device)

    def step() -> float:
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    losses = [step() for _ in range(args.steps)]
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = (time.perf_counter() - start) / args.steps
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else 0
    result = {"base_gib": base_bytes(model) / 2**30, "peak_gib": peak / 2**30, "ms": elapsed * 1e3,
              "tok_s": args.batch * args.seq / elapsed, "loss": losses[-1]}  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--preset", default="llama-1b")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    where = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    print(f"{args.preset}, {args.batch} x {args.seq} tokens/step, rank 16 all-linear, bf16, torch {torch.__version__}, "
          f"{where}")  # fmt: skip
    results = {}
    for method in ("lora", "qlora"):
        results[method] = run(method, args)
        gc.collect()  # the model of the run before is unreachable now
        if args.device == "cuda":
            torch.cuda.empty_cache()
    for method, r in results.items():
        print(f"  {method:5s}: base {r['base_gib']:6.2f} GiB, peak {r['peak_gib']:6.2f} GiB, {r['ms']:8.1f} ms/step, "
              f"{r['tok_s']:9.0f} tok/s, loss {r['loss']:.3f}")  # fmt: skip
    q, lo = results["qlora"], results["lora"]
    print(f"  qlora / lora: base {q['base_gib'] / lo['base_gib']:.2f}, "
          f"peak {q['peak_gib'] / max(lo['peak_gib'], 1e-9):.2f}, step time {q['ms'] / lo['ms']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
