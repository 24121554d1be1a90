"""Training benchmark (issues 6 and 16), on one CUDA GPU: our model + engine, with each speed change toggled, vs
transformers' LlamaForCausalLM + torch.compile, in one run.

Both models are built from the same ModelConfig (via our HF config export) and trained by the same loop
(`llm_platform.trainer.train.loop.train`): same batch, data, fused AdamW with fp32 master weights, bf16 autocast and
`torch.compile`. HF's logits go through the plain cross-entropy; ours fuses the LM head into the loss.

Variants (`--variants`, comma-separated): `hf`, or `ours` followed by any of these toggles joined with `+`:
    proj     fused QKV and gate/up projections  (ModelConfig.fused_projections)
    triton   our Triton RMSNorm+residual, SwiGLU and rotary kernels  (ModelConfig.kernels = "triton")
    liger    liger-kernel's kernels instead  (ModelConfig.kernels = "liger"; needs liger-kernel)
    bf16res  the residual stream in bf16  (ModelConfig.residual_dtype = "autocast")
    cudnn / flash / efficient   one SDPA backend  (ModelConfig.attn_impl)
    plainloss  the LM head's logits materialised and a plain cross-entropy (no fused loss)
    fp8      torchao float8 linears (TrainConfig.fp8; needs torchao); `hf+fp8` too
e.g. `ours+proj+triton+bf16res+fp8`. Ratios: each row against `hf` and against `ours` (both bf16) of its size.

Phases
    throughput  tokens/s and MFU at 125M (d768 L12 GQA 12/4, vocab 32000, 16 x 2048) and 1.1B (d2048 L22 GQA 32/4,
                ffn 5632, 8 x 2048) for every variant.
    profile     the CUDA kernels of three steps of `--profile-variant` at the first size, grouped (matmul,
                attention, fused element-wise, optimizer, other), with the wall time of a step beside their sum.
    quality     `--quality-variants` at 125M on a real corpus (`--corpus`: a folder from `trainer.data.pack`, e.g.
                from `bench/byte_corpus.py`), same data, token budget and schedule; validation loss curves to JSON
                and a PNG.

    PYTHONPATH=. python3 bench/train.py --json train.json --plot quality.png --corpus .bench_data/corpus
    PYTHONPATH=. python3 bench/train.py --device cpu --tiny          # a smoke test of this script

This script and what it imports must not need pydantic (the GPU machine has none).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import io
import json
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import nn

from llm_platform.trainer.data.loader import PretrainLoader
from llm_platform.trainer.data.pack import open_split
from llm_platform.trainer.model import flops_per_token, get_config, num_params
from llm_platform.trainer.model.hf_config import config_to_hf
from llm_platform.trainer.model.transformer import Transformer
from llm_platform.trainer.train.config import TrainConfig
from llm_platform.trainer.train.distributed import DistEnv, compile_for_training
from llm_platform.trainer.train.loop import train
from llm_platform.trainer.train.objective import NextTokenLoss

SIZES = {
    "125m": (dict(preset="llama-125m", num_kv_heads=4), 16),
    "1.1b": (
        dict(
            preset="llama-125m",
            dim=2048,
            n_layers=22,
            n_heads=32,
            num_kv_heads=4,
            ffn_dim=5632,
            tie_embeddings=False,
        ),
        8,
    ),
}
TINY = (dict(preset="llama-tiny", vocab_size=512), 2)


class HFLogits(nn.Module):
    """transformers' causal LM as a plain `ids -> logits` module, for `NextTokenLoss`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, use_cache=False).logits


def model_config(spec: dict, seq_len: int):
    spec = dict(spec)
    return get_config(spec.pop("preset"), max_seq_len=seq_len, **spec)


TOGGLES = {
    "proj": {"fused_projections": True},
    "triton": {"kernels": "triton"},
    "liger": {"kernels": "liger"},
    "bf16res": {"residual_dtype": "autocast"},
    "cudnn": {"attn_impl": "cudnn"},
    "flash": {"attn_impl": "flash"},
    "efficient": {"attn_impl": "efficient"},
}


@dataclasses.dataclass(frozen=True, eq=False)
class Variant:
    """One row of the table: which model, which ModelConfig changes, fused loss or not, FP8 or not."""

    name: str
    kind: str  # "ours" or "hf"
    overrides: dict
    fused_loss: bool
    fp8: bool

    @classmethod
    def parse(cls, name: str) -> Variant:
        legacy = {"ours-fused": "ours", "ours-plain": "ours+plainloss"}
        head, *toggles = legacy.get(name, name).split("+")
        if head not in ("ours", "hf"):
            raise SystemExit(f"variant {name!r}: must start with 'ours' or 'hf'")
        overrides: dict = {}
        for toggle in toggles:
            if head == "hf" and toggle != "fp8":
                raise SystemExit(f"variant {name!r}: hf takes only the fp8 toggle; {toggle!r} changes our model")
            if toggle in ("fp8", "plainloss"):
                continue
            if toggle not in TOGGLES:
                raise SystemExit(
                    f"variant {name!r}: unknown toggle {toggle!r}; known: {sorted(TOGGLES)}, fp8, plainloss"
                )
            overrides.update(TOGGLES[toggle])
        return cls(name, head, overrides, head == "ours" and "plainloss" not in toggles, "fp8" in toggles)


def build(variant: Variant, config, device: torch.device, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """(model, loss module) for a variant, initialised from `seed`."""
    torch.manual_seed(seed)
    if variant.kind == "hf":
        import transformers

        hf_config = transformers.AutoConfig.for_model(**config_to_hf(config))
        hf_config._attn_implementation = "sdpa"
        model = transformers.AutoModelForCausalLM.from_config(hf_config).to(device)
        return model, NextTokenLoss(HFLogits(model))
    model = Transformer(dataclasses.replace(config, **variant.overrides)).to(device)
    return model, NextTokenLoss(model, fused_loss=variant.fused_loss)


def run(
    variant: Variant,
    config,
    micro_batch: int,
    seq_len: int,
    steps: int,
    args,
    tokens=None,
    val=None,
    granularity: str = "model",
    **train_kw,
):
    """Train one model with the engine; returns its numbers."""
    device = torch.device(args.device)
    model, objective = build(variant, config, device)
    tc = TrainConfig(
        steps=steps,
        micro_batch=micro_batch,
        seq_len=seq_len,
        precision="bf16",
        compile=not args.no_compile,
        log_every=args.log_every,
        fp8=variant.fp8,
        **train_kw,
    )
    if tokens is None:
        n = micro_batch * seq_len * (steps + 1) + 1
        tokens = np.random.default_rng(0).integers(0, config.vocab_size, n).astype(np.uint16)
    loader = PretrainLoader(tokens, seq_len, micro_batch, seed=0, device=device)
    sink = Console(file=io.StringIO())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = train(
        model,
        tc,
        loader,
        DistEnv(device=device),
        objective=objective,
        val_tokens=val,
        console=sink,
        flops_per_token=flops_per_token(config, seq_len),
        compile_granularity=granularity,
    )
    wall = time.perf_counter() - t0
    windows = [r["tokens_per_s"] for r in result.records if "tokens_per_s" in r]
    steady = windows[1:] or windows  # the first window can hold recompilations
    memory = [r["memory_bytes"] for r in result.records if "memory_bytes" in r]
    tps = float(np.median(steady)) if steady else None
    peak = 989.5e12 if device.type == "cuda" else None
    out = {
        "model": variant.name + ("" if variant.kind == "hf" or args.no_compile else f"/{granularity}"),
        "params": num_params(config),
        "tokens_per_s": round(tps, 1) if tps else None,
        "mfu": round(flops_per_token(config, seq_len) * tps / peak, 4) if tps and peak else None,
        "first_step_s": round(wall - (steps - 1) * micro_batch * seq_len / tps, 1) if tps else None,
        "peak_memory_gib": round(max(memory) / 2**30, 1) if memory else None,
        "loss_end": result.loss_end,
        "val_curve": [(r["step"], r["val_loss"]) for r in result.records if "val_loss" in r],
    }
    del model, objective, result
    release()
    return out


def release() -> None:
    gc.collect()
    torch._dynamo.reset()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def profile(variant: Variant, config, micro_batch: int, seq_len: int, args, granularity: str) -> dict:
    """Kernel time of three steps of a variant of ours, grouped by kind, and the wall time of a step."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    device = torch.device(args.device)
    model, objective = build(variant, config, device)
    if not args.no_compile:
        compile_for_training(objective, model, granularity)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    ids = torch.randint(0, config.vocab_size, (micro_batch, seq_len + 1), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = objective(ids)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    sync()
    t0 = time.perf_counter()
    for _ in range(10):
        step()
    sync()
    wall_ms = (time.perf_counter() - t0) / 10 * 1e3
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(3):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    # record_function ranges (e.g. "Optimizer.step#AdamW.step") are also listed on the GPU: not kernels, and their
    # time would count a second time.
    events = prof.key_averages() if device.type == "cuda" else []
    kernels = [e for e in events if e.device_type.name == "CUDA" and "#" not in e.key]
    total = sum(e.self_device_time_total for e in kernels) or 1.0
    groups: dict[str, float] = {}
    for e in kernels:
        groups[kernel_group(e.key)] = groups.get(kernel_group(e.key), 0.0) + e.self_device_time_total
    top = sorted(kernels, key=lambda e: -e.self_device_time_total)[:20]
    return {
        "variant": variant.name,
        "granularity": granularity,
        "wall_step_ms": round(wall_ms, 2),
        "step_ms": round(total / 3 / 1e3, 2),
        "groups": {k: round(100 * v / total, 1) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
        "top": [(e.key[:90], round(100 * e.self_device_time_total / total, 1), e.count) for e in top],
    }


def kernel_group(name: str) -> str:
    n = name.lower()
    if any(s in n for s in ("sdpa", "fmha", "flash", "attention")):  # before matmul: cuDNN's names hold "wgmma"
        return "attention"
    if any(s in n for s in ("gemm", "nvjet", "cutlass", "sm90_xmma", "matmul", "wgmma")):
        return "matmul"
    if "adam" in n or "multi_tensor" in n or "foreach" in n:
        return "optimizer"
    if n.startswith("triton") or "triton" in n:
        return "fused element-wise (triton)"
    return "other"


def plot(curves: dict[str, list], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in curves.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("validation loss")
    ax.set_title("125M, same corpus, batch, optimizer and schedule")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


DEFAULT_VARIANTS = (
    "hf,ours,ours+proj,ours+triton,ours+liger,ours+bf16res,ours+proj+triton+bf16res,"
    "hf+fp8,ours+fp8,ours+proj+triton+bf16res+fp8"
)


def add_ratios(rows: list[dict], size: str) -> None:
    """Each row's tokens/s against `hf` and against `ours` of the same size (bf16 both), printed as a table line."""
    base = {r["model"].split("/")[0]: r["tokens_per_s"] for r in rows if r.get("tokens_per_s")}
    for r in rows:
        if not r.get("tokens_per_s"):
            continue
        for ref in ("hf", "ours"):
            if base.get(ref):
                r[f"ratio_vs_{ref}"] = round(r["tokens_per_s"] / base[ref], 3)
        print(
            f"[{size}] {r['model']:<40} {r['tokens_per_s']:>11,.0f} tok/s  MFU {r['mfu']}  "
            f"x{r.get('ratio_vs_hf')} hf  x{r.get('ratio_vs_ours')} ours  loss {r['loss_end']}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phases", default="throughput,profile,quality")
    parser.add_argument("--sizes", default="125m,1.1b")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help="see the module docstring")
    parser.add_argument("--granularity", default="model", help="compile granularities to run ours with (model,block)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--log-every", type=int, default=5)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--profile-variant", default="ours")
    parser.add_argument("--corpus", type=Path, help="packed token folder for the quality phase")
    parser.add_argument("--quality-variants", default="hf,ours,ours+proj+triton+bf16res")
    parser.add_argument("--quality-steps", type=int, default=400)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--budget-s", type=float, default=540, help="skip what is left after this many seconds")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    started = time.monotonic()
    phases = args.phases.split(",")
    seq_len = 64 if args.tiny else args.seq_len
    report: dict = {"date": datetime.date.today().isoformat(), "torch": torch.__version__, "seq_len": seq_len}
    if args.device == "cuda":
        report["gpu"] = torch.cuda.get_device_name()
    sizes = {"tiny": TINY} if args.tiny else {s: SIZES[s] for s in args.sizes.split(",")}
    variants = [Variant.parse(v) for v in args.variants.split(",")]

    def time_left() -> bool:
        return time.monotonic() - started < args.budget_s

    def save() -> None:
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))

    granularities = args.granularity.split(",")
    runs = [(v, "model") if v.kind == "hf" else (v, g) for v in variants for g in granularities]
    runs = list({(v.name, g): (v, g) for v, g in runs}.values())
    if "throughput" in phases:
        report["throughput"] = {}
        for size, (spec, micro_batch) in sizes.items():
            config = model_config(spec, seq_len)
            rows = report["throughput"][size] = []
            for variant, granularity in runs:
                if not time_left():
                    break
                try:
                    rows.append(run(variant, config, micro_batch, seq_len, args.steps, args, granularity=granularity))
                except (ImportError, RuntimeError) as e:  # a missing extra (torchao, liger) or a failed kernel
                    rows.append({"model": variant.name, "error": f"{type(e).__name__}: {e}"[:300]})
                    release()
                print(f"[{size}] {json.dumps(rows[-1])}", flush=True)
                save()
            add_ratios(rows, size)
            save()
    if "profile" in phases and time_left():
        spec, micro_batch = next(iter(sizes.values()))
        variant = Variant.parse(args.profile_variant)
        config = model_config(spec, seq_len)
        report["profile"] = profile(variant, config, micro_batch, seq_len, args, granularities[0])
        release()
        print(json.dumps(report["profile"], indent=1), flush=True)
        save()
    if "quality" in phases and args.corpus and time_left():
        spec, _ = next(iter(sizes.values()))
        q_seq, q_batch = (64, 4) if args.tiny else (1024, 8)
        tokens, val = open_split(args.corpus, "train"), open_split(args.corpus, "val")
        meta = json.loads((args.corpus / "meta.json").read_text())
        config = model_config({**spec, "vocab_size": meta["vocab_size"]}, q_seq)
        curves, rows = {}, []
        for name in args.quality_variants.split(","):
            if not time_left():
                break
            rows.append(
                run(
                    Variant.parse(name),
                    config,
                    q_batch,
                    q_seq,
                    args.quality_steps,
                    args,
                    tokens=tokens,
                    val=val,
                    lr=6e-4,
                    warmup_steps=args.quality_steps // 10,
                    eval_every=max(1, args.quality_steps // 16),
                    eval_batches=6,
                    granularity=granularities[0],
                )
            )
            curves[name] = rows[-1]["val_curve"]
            print(f"[quality] {name}: final val loss {curves[name][-1][1]:.4f}  curve {curves[name]}", flush=True)
        report["quality"] = {"tokens": args.quality_steps * q_batch * q_seq, "runs": rows}
        if args.plot:
            plot(curves, args.plot)
        save()
    save()


if __name__ == "__main__":
    main()
