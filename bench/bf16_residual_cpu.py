"""Does a bf16 residual stream (ModelConfig.residual_dtype = "autocast") move the loss? A CPU check under bf16
autocast, which the training engine does not run on CPU (it trains in fp32 there), so this script has its own loop.

The tiny Llama (d128, 2 layers, GQA 4/2) on the byte-level corpus (`bench/byte_corpus.py`), 250 AdamW steps of
8 x 128 tokens, then the validation loss on 12 fixed windows; for each seed, fp32 and bf16 residual from the same
initial weights and batches, so the paired difference is the change's effect and the spread across seeds the noise.

    PYTHONPATH=. python3 bench/bf16_residual_cpu.py .bench_data/bytes --seeds 0,1,2     # ~6 min on one core
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from llm_platform.trainer.data.pack import open_split
from llm_platform.trainer.model import get_config
from llm_platform.trainer.model.transformer import Transformer
from llm_platform.trainer.train.objective import NextTokenLoss


def windows(tokens: np.ndarray, rng: np.random.Generator, batch: int = 8, seq: int = 128) -> torch.Tensor:
    starts = rng.integers(0, len(tokens) - seq - 1, batch)
    return torch.from_numpy(np.stack([tokens[s : s + seq + 1].astype(np.int64) for s in starts]))


def val_loss(corpus: Path, seed: int, residual_dtype: str, steps: int) -> float:
    train, val = open_split(corpus, "train"), open_split(corpus, "val")
    config = dataclasses.replace(get_config("llama-tiny", vocab_size=257), residual_dtype=residual_dtype)
    torch.manual_seed(seed)
    model = Transformer(config)
    objective = NextTokenLoss(model, fused_loss=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1)
    rng = np.random.default_rng(seed)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = 3e-3 * min(1.0, (step + 1) / 25)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = objective(windows(train, rng))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    objective.eval()
    val_rng = np.random.default_rng(123)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        return float(np.mean([float(objective(windows(val, val_rng))) for _ in range(12)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=250)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for seed in map(int, args.seeds.split(",")):
        fp32 = val_loss(args.corpus, seed, "float32", args.steps)
        bf16 = val_loss(args.corpus, seed, "autocast", args.steps)
        print(f"seed {seed}: fp32 residual {fp32:.4f}  bf16 residual {bf16:.4f}  difference {bf16 - fp32:+.4f}")


if __name__ == "__main__":
    main()
