"""Per-kernel speed on one CUDA GPU (issue 16): each fused op against the PyTorch reference compiled by
torch.compile (what the model ran before: inductor fuses it into its own Triton kernels) and eager, forward +
backward, at the 125M and 1.1B training shapes (16 x 2048 and 8 x 2048 tokens); and the SDPA backends per head dim.

    PYTHONPATH=. python3 bench/kernels.py --json kernels.json     # needs a GPU; liger rows need liger-kernel

Rows: `torch` (eager reference), `compiled` (the reference under torch.compile: the baseline), `triton` (ours),
`liger` (liger-kernel). speed-up = compiled time / this time. Times are triton.testing.do_bench medians in ms.
Attention: causal fwd+bwd per SDPA backend at head dims 64 and 128 (the order `kernels._CUDA_PRIORITY` tries).
This script must not need pydantic (the GPU machine has none).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from llm_platform.trainer.model import fused_ops
from llm_platform.trainer.model.rope import rope_cos_sin
from llm_platform.trainer.train.loss import IGNORE_INDEX, linear_cross_entropy

SHAPES = {"125m": dict(tokens=16 * 2048, dim=768, ffn=2048, heads=12, kv=4, hd=64, batch=16)}
SHAPES["1.1b"] = dict(tokens=8 * 2048, dim=2048, ffn=5632, heads=32, kv=4, hd=64, batch=8)
VOCAB = 32000


def liger_linear_cross_entropy(
    hidden: torch.Tensor,
    head_weight: torch.Tensor,
    targets: torch.Tensor,
    z_loss: float = 0.0,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """`linear_cross_entropy` through liger-kernel's fused linear cross-entropy (GPU, the ``gpu`` extra), to measure
    against ours. Same contract: mean over the kept tokens plus the z-loss."""
    from llm_platform.trainer.model.fused_ops import liger_ops

    flce = liger_ops().fused_linear_cross_entropy.LigerFusedLinearCrossEntropyFunction
    flat = hidden.reshape(-1, hidden.size(-1))
    dtype = fused_ops.output_dtype(flat)
    with torch.autocast(flat.device.type, enabled=False):
        out = flce.apply(
            flat.to(dtype),
            head_weight.to(dtype),
            targets.reshape(-1),
            None,  # bias
            None,  # class weights
            ignore_index,
            z_loss,  # lse_square_scale: the same z-loss
            0.0,  # label smoothing
            "mean",
            None,  # softcap
            False,  # return_z_loss
            torch.float32,  # accumulate the weight gradient in float32, as ours does
        )
    return out[0] if isinstance(out, tuple) else out


def bench_ms(fn: Callable[[], object]) -> float:
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=10, rep=60))


def fwd_bwd(make: Callable[[str], Callable], inputs: list[torch.Tensor], impl: str) -> Callable[[], None]:
    """One forward + backward of the op under bf16 autocast, gradients to `inputs`."""
    op = make(impl)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = op()
        outs = out if isinstance(out, tuple) else (out,)
        torch.autograd.backward([o for o in outs], [torch.ones_like(o) for o in outs], inputs=inputs)

    return step


def ops(shape: dict) -> dict[str, tuple[Callable[[str], Callable], list[torch.Tensor]]]:
    """name -> (impl -> zero-argument op, the leaf tensors it takes gradients to)."""
    dev, n, d, f = "cuda", shape["tokens"], shape["dim"], shape["ffn"]
    b, t = shape["batch"], n // shape["batch"]
    x = torch.randn(b, t, d, device=dev, requires_grad=True)  # the fp32 residual stream (float32 master weights)
    xb = torch.randn(b, t, d, device=dev, dtype=torch.bfloat16, requires_grad=True)  # a bf16 residual stream
    delta = torch.randn(b, t, d, device=dev, dtype=torch.bfloat16, requires_grad=True)
    w = torch.ones(d, device=dev, requires_grad=True)
    gate_up = torch.randn(b, t, 2 * f, device=dev, dtype=torch.bfloat16, requires_grad=True)
    qkv = torch.randn(b, t, shape["heads"] + 2 * shape["kv"], shape["hd"], device=dev, dtype=torch.bfloat16)
    qkv.requires_grad_()
    cos, sin = rope_cos_sin(
        torch.arange(t, device=dev), shape["hd"], 1e4, None, seq_len=t, max_seq_len=t, dtype=torch.bfloat16
    )
    heads, kv = shape["heads"], shape["kv"]

    def rotary(impl: str):
        def op():
            q, k, _ = qkv.split([heads, kv, kv], dim=2)
            return fused_ops.rotary(q.transpose(1, 2), k.transpose(1, 2), cos, sin, impl)

        return op

    return {
        "add+rmsnorm (fp32 residual)": (lambda i: lambda: fused_ops.add_rms_norm(x, delta, w, 1e-5, i), [x, delta, w]),
        "add+rmsnorm (bf16 residual)": (
            lambda i: lambda: fused_ops.add_rms_norm(xb, delta, w, 1e-5, i),
            [xb, delta, w],
        ),
        "swiglu (packed gate/up)": (lambda i: lambda: fused_ops.swiglu_packed(gate_up, i), [gate_up]),
        "rotary q+k (fused qkv views)": (rotary, [qkv]),
    }


def compiled_reference(make: Callable[[str], Callable]) -> Callable[[str], Callable]:
    return lambda _impl: torch.compile(make("torch"))


def bench_ops(size: str, impls: list[str]) -> list[dict]:
    rows = []
    for name, (make, inputs) in ops(SHAPES[size]).items():
        times = {}
        for impl in ["torch", "compiled", *impls]:
            maker = compiled_reference(make) if impl == "compiled" else make
            try:
                times[impl] = bench_ms(fwd_bwd(maker, inputs, "torch" if impl == "compiled" else impl))
            except Exception as e:  # a kernel that fails is reported, not fatal to the other rows
                times[impl] = f"{type(e).__name__}: {e}"[:200]
        base = times["compiled"]
        row = {"size": size, "op": name, "ms": times}
        row["speedup_vs_compiled"] = {
            k: round(base / v, 3) for k, v in times.items() if isinstance(v, float) and isinstance(base, float)
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        torch._dynamo.reset()
    return rows


def bench_loss(size: str, impls: list[str]) -> list[dict]:
    """LM head + cross-entropy: logits materialised (compiled), our chunked fused loss, liger's."""
    shape = SHAPES[size]
    hidden = torch.randn(shape["tokens"], shape["dim"], device="cuda", dtype=torch.bfloat16, requires_grad=True)
    weight = (torch.randn(VOCAB, shape["dim"], device="cuda") * 0.02).requires_grad_()
    targets = torch.randint(0, VOCAB, (shape["tokens"],), device="cuda")
    targets[::17] = -100

    def plain():
        return F.cross_entropy(F.linear(hidden, weight).float(), targets)

    variants: dict[str, Callable] = {
        "logits+CE (compiled)": torch.compile(plain),
        "ours chunked (torch)": lambda: linear_cross_entropy(hidden, weight, targets),
        "ours chunked (compiled)": torch.compile(lambda: linear_cross_entropy(hidden, weight, targets)),
    }
    if "liger" in impls:
        variants["liger"] = lambda: liger_linear_cross_entropy(hidden, weight, targets)
    times, values = {}, {}
    for name, fn in variants.items():

        def step(fn=fn):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = fn()
            loss.backward(inputs=[hidden, weight])
            return loss

        try:
            values[name] = float(step())
            times[name] = bench_ms(step)
        except Exception as e:
            times[name] = f"{type(e).__name__}: {e}"[:200]
    base = times["logits+CE (compiled)"]
    row = {"size": size, "op": "lm head + cross-entropy", "ms": times, "loss": values}
    row["speedup_vs_compiled"] = {k: round(base / v, 3) for k, v in times.items() if isinstance(v, float)}
    print(json.dumps(row), flush=True)
    torch._dynamo.reset()
    return [row]


def bench_attention() -> list[dict]:
    """Causal fwd+bwd TFLOP/s of each SDPA backend at the two head dims (GQA read in place where it can)."""
    rows = []
    backends = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}
    backends["efficient"] = SDPBackend.EFFICIENT_ATTENTION
    for hd, heads, kv, batch in ((64, 12, 4, 16), (64, 32, 4, 8), (128, 16, 4, 8)):
        t = 2048
        q = torch.randn(batch, heads, t, hd, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn(batch, kv, t, hd, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        v = torch.randn_like(k, requires_grad=True)
        flops = 3.5 * 4 * batch * heads * t * t * hd / 2  # causal forward x 3.5 for fwd + bwd
        row = {"head_dim": hd, "heads": heads, "kv_heads": kv, "batch": batch, "seq": t, "tflops": {}, "ms": {}}
        for name, backend in backends.items():
            kk, vv, gqa = (k, v, True)
            if name == "efficient":  # it cannot group heads: repeated as kernels.py does
                kk, vv, gqa = k.repeat_interleave(heads // kv, 1), v.repeat_interleave(heads // kv, 1), False

            def step(backend=backend, q=q, kk=kk, vv=vv, gqa=gqa):
                with sdpa_kernel([backend]):
                    out = F.scaled_dot_product_attention(q, kk, vv, is_causal=True, enable_gqa=gqa)
                out.backward(torch.ones_like(out), inputs=[q])

            try:
                ms = bench_ms(step)
                row["ms"][name], row["tflops"][name] = round(ms, 3), round(flops / ms / 1e9, 1)
            except Exception as e:
                row["ms"][name] = f"{type(e).__name__}: {e}"[:160]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="125m,1.1b")
    parser.add_argument("--impls", default="triton,liger")
    parser.add_argument("--parts", default="ops,loss,attention")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    impls = args.impls.split(",")
    if "liger" in impls:
        try:
            import liger_kernel  # noqa: F401
        except ImportError:
            print("liger-kernel is not installed: its rows are left out", flush=True)
            impls.remove("liger")
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "ops": [], "attention": []}
    parts = args.parts.split(",")
    for size in args.sizes.split(","):
        if "ops" in parts:
            report["ops"] += bench_ops(size, impls)
        if "loss" in parts:
            report["ops"] += bench_loss(size, impls)
    if "attention" in parts:
        report["attention"] = bench_attention()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
