"""8-bit AdamW step time (issue 15): `build_optimizer`'s adamw8bit against torch's AdamW, in one run.

A Transformer of about 4.2M parameters (d256, 4 layers, vocab 4096) gets fixed random gradients; each optimizer
takes `--steps` steps after `--warmup`, and the mean wall time of `optimizer.step()` is printed for both with their
ratio, and which 8-bit implementation ran (torchao's when installed, else ours).

    PYTHONPATH=. OMP_NUM_THREADS=1 python3 bench/optim8bit.py            # CPU
    PYTHONPATH=. python3 bench/optim8bit.py --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch

from llm_platform.trainer.model import get_config
from llm_platform.trainer.model.transformer import Transformer
from llm_platform.trainer.train.config import TrainConfig
from llm_platform.trainer.train.optim import build_optimizer


def model_with_grads(device: str) -> Transformer:
    torch.manual_seed(0)
    config = get_config("llama-tiny", dim=256, n_layers=4, n_heads=4, ffn_dim=768, vocab_size=4096)
    model = Transformer(config).to(device)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    return model


def step_ms(optimizer_name: str, device: str, steps: int, warmup: int) -> tuple[float, str, int]:
    model = model_with_grads(device)
    optimizer = build_optimizer(model, TrainConfig(steps=1, lr=1e-3, optimizer=optimizer_name))
    for _ in range(warmup):
        optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = (time.perf_counter() - start) / steps * 1e3
    kind = f"{type(optimizer).__module__}.{type(optimizer).__name__}"
    return elapsed, kind, sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    base_ms, base_kind, n = step_ms("adamw", args.device, args.steps, args.warmup)
    ours_ms, ours_kind, _ = step_ms("adamw8bit", args.device, args.steps, args.warmup)
    print(f"{n / 1e6:.2f}M parameters on {args.device}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print(f"  adamw     ({base_kind}): {base_ms:8.1f} ms/step")
    print(f"  adamw8bit ({ours_kind}): {ours_ms:8.1f} ms/step")
    print(f"  ratio adamw8bit / adamw: {ours_ms / base_ms:.2f}")


if __name__ == "__main__":
    main()
