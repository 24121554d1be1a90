"""Attention benchmark (issue 3), on one CUDA GPU.

1. SDPA kernels alone, fwd+bwd, at the Llama-3-8B attention shape (32 query heads, 8 KV heads, head 128, bf16):
   each backend with grouped K/V read in place (enable_gqa) or repeated.
2. Our ``Attention`` module vs transformers' ``LlamaAttention`` (SDPA implementation), same weights, fwd+bwd at
   sequence 4096 and 32768; ratio = transformers time / our time (> 1: ours is faster).
3. Inference at 128K tokens with the ``llama-1b`` preset (bf16): chunked prefill into a StaticKVCache, then decode,
   with a 4096-token sliding window vs full attention; peak GPU memory and time.
4. Correctness on the GPU: our module vs LlamaAttention outputs, and cached vs uncached logits.

    PYTHONPATH=. python bench/attention.py --json results.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import time

import torch
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from llm_platform.trainer.inference.kv_cache import StaticKVCache
from llm_platform.trainer.model import Transformer, get_config
from llm_platform.trainer.model.attention import Attention, AttentionContext
from llm_platform.trainer.model.rope import rope_cos_sin

HEADS, KV_HEADS, HEAD_DIM, DIM = 32, 8, 128, 4096
DTYPE = torch.bfloat16
DEVICE = "cuda"  # --device cpu runs a smoke test of this script with tiny sizes


def synchronize() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def cuda_time_ms(fn, warmup: int = 3, iters: int = 10) -> float:
    """Median milliseconds of ``fn`` over ``iters`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if DEVICE == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            start_s = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start_s) * 1e3)
    return sorted(times)[len(times) // 2]


def peak_memory() -> int:
    return torch.cuda.max_memory_allocated() if DEVICE == "cuda" else 0


def causal_attention_tflops(seq: int, ms: float) -> float:
    """fwd + bwd = 3.5 x forward (backward recomputes scores); forward = 4 * T^2 * H * d / 2 under the causal mask."""
    forward = 4 * seq * seq * HEADS * HEAD_DIM / 2
    return 3.5 * forward / (ms * 1e-3) / 1e12


def kernel_variants(seq: int) -> list[dict]:
    q = torch.randn(1, HEADS, seq, HEAD_DIM, device=DEVICE, dtype=DTYPE, requires_grad=True)
    k = torch.randn(1, KV_HEADS, seq, HEAD_DIM, device=DEVICE, dtype=DTYPE, requires_grad=True)
    v = torch.randn(1, KV_HEADS, seq, HEAD_DIM, device=DEVICE, dtype=DTYPE, requires_grad=True)
    grad = torch.randn(1, HEADS, seq, HEAD_DIM, device=DEVICE, dtype=DTYPE)
    groups = HEADS // KV_HEADS
    variants = {
        "cudnn, K/V repeated": ([SDPBackend.CUDNN_ATTENTION], True),
        "cudnn, enable_gqa": ([SDPBackend.CUDNN_ATTENTION], False),
        "flash, enable_gqa": ([SDPBackend.FLASH_ATTENTION], False),
        "flash, K/V repeated": ([SDPBackend.FLASH_ATTENTION], True),
        "efficient, K/V repeated": ([SDPBackend.EFFICIENT_ATTENTION], True),
        "PyTorch default order, enable_gqa": (None, False),
    }
    rows = []
    for name, (backends, repeat) in variants.items():

        def step(backends=backends, repeat=repeat):
            kk, vv = (k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)) if repeat else (k, v)
            if backends is None:
                out = F.scaled_dot_product_attention(q, kk, vv, is_causal=True, enable_gqa=not repeat)
            else:
                with sdpa_kernel(backends):
                    out = F.scaled_dot_product_attention(q, kk, vv, is_causal=True, enable_gqa=not repeat)
            out.backward(grad)

        try:
            ms = cuda_time_ms(step)
            rows.append({"seq": seq, "variant": name, "ms": ms, "tflops": causal_attention_tflops(seq, ms)})
        except RuntimeError as error:
            rows.append({"seq": seq, "variant": name, "error": str(error).splitlines()[0][:120]})
        q.grad = k.grad = v.grad = None
    return rows


def llama_attention_pair():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaAttention, LlamaRotaryEmbedding

    hf_config = LlamaConfig(
        hidden_size=DIM,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        head_dim=HEAD_DIM,
        max_position_embeddings=131072,
        rope_theta=500000.0,
    )
    hf_config._attn_implementation = "sdpa"
    hf = LlamaAttention(hf_config, layer_idx=0).to(DEVICE, DTYPE)
    config = get_config("llama3-8b")
    ours = Attention(config, layer=0).to(DEVICE, DTYPE)
    ours.load_state_dict(hf.state_dict())
    return hf, LlamaRotaryEmbedding(hf_config).to(DEVICE), ours, config


def module_vs_transformers(seq: int, hf, hf_rope, ours, config) -> dict:
    x = torch.randn(1, seq, DIM, device=DEVICE, dtype=DTYPE, requires_grad=True)
    grad = torch.randn(1, seq, DIM, device=DEVICE, dtype=DTYPE)
    positions = torch.arange(seq, device=DEVICE)
    hf_cos_sin = hf_rope(x, positions[None])
    ours_ctx = AttentionContext(
        positions,
        rope_cos_sin(positions, HEAD_DIM, config.rope_theta, None, seq_len=seq, max_seq_len=seq, dtype=DTYPE),
    )

    def hf_step():
        hf(x, position_embeddings=hf_cos_sin, attention_mask=None)[0].backward(grad)

    def ours_step():
        ours(x, ours_ctx).backward(grad)

    with torch.no_grad():
        diff = (hf(x, position_embeddings=hf_cos_sin, attention_mask=None)[0] - ours(x, ours_ctx)).abs().max().item()
    iters = 10 if seq <= 8192 else 5
    hf_ms, ours_ms = cuda_time_ms(hf_step, iters=iters), cuda_time_ms(ours_step, iters=iters)
    return {"seq": seq, "transformers_ms": hf_ms, "ours_ms": ours_ms, "ratio": hf_ms / ours_ms, "max_abs_diff": diff}


@torch.no_grad()
def long_context_inference(preset: str, total: int, window: int | None, chunk: int = 4096, decode: int = 32) -> dict:
    config = get_config(preset, sliding_window=window, max_seq_len=max(total + decode, 131072))
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = Transformer(config).to(DTYPE).eval()
    synchronize()
    weights = torch.cuda.memory_allocated() if DEVICE == "cuda" else 0
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    cache = StaticKVCache(config, batch_size=1, max_len=total + decode, device=DEVICE, dtype=DTYPE)
    ids = torch.randint(0, config.vocab_size, (1, total + decode), device=DEVICE)
    start = time.perf_counter()
    for pos in range(0, total, chunk):
        hidden = model.hidden_states(ids[:, pos : min(pos + chunk, total)], cache=cache, start_pos=pos)
        model.lm_head(hidden[:, -1:])
    synchronize()
    prefill_s = time.perf_counter() - start
    start = time.perf_counter()
    for pos in range(total, total + decode):
        model(ids[:, pos : pos + 1], cache=cache, start_pos=pos)
    synchronize()
    decode_ms = (time.perf_counter() - start) / decode * 1e3
    result = {
        "preset": preset,
        "tokens": total,
        "window": window,
        "weights_gib": weights / 2**30,
        "kv_cache_gib": cache.memory_bytes() / 2**30,
        "peak_gib": peak_memory() / 2**30,
        "prefill_s": prefill_s,
        "decode_ms_per_token": decode_ms,
    }
    del model, cache
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    return result


@torch.no_grad()
def cached_vs_full_logits() -> dict:
    """Relative max difference between prefill + one-token decode through the cache and one full forward."""
    out = {}
    # MLA without experts: in bf16 a near-tie in top-k routing can flip between two kernel paths, which says nothing
    # about the cache.
    cases = (("llama-tiny", {}), ("mistral-tiny", {"sliding_window": 16}), ("deepseek-tiny", {"n_experts": 0}))
    for preset, overrides in cases:
        for dtype in (torch.float32, DTYPE):
            config = get_config(preset, max_seq_len=512, **overrides)
            torch.manual_seed(0)
            with torch.device(DEVICE):
                model = Transformer(config).to(dtype).eval()
            ids = torch.randint(0, config.vocab_size, (2, 96), device=DEVICE)
            cache = StaticKVCache(config, batch_size=2, max_len=96, device=DEVICE, dtype=dtype)
            pieces = [model(ids[:, :64], cache=cache, start_pos=0)]
            pieces += [model(ids[:, p : p + 1], cache=cache, start_pos=p) for p in range(64, 96)]
            full = model(ids).float()
            diff = (torch.cat(pieces, 1).float() - full).abs().max() / full.abs().max()
            out[f"{preset}/{str(dtype).removeprefix('torch.')}"] = diff.item()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seqs", type=int, nargs="+", default=[4096, 32768])
    parser.add_argument("--long-context", type=int, default=131072)
    parser.add_argument("--window", type=int, default=4096)
    parser.add_argument("--long-preset", default="llama-1b")
    parser.add_argument("--skip-kernels", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--device", default="cuda", help="'cpu' smoke-tests the script with tiny sizes")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    import transformers

    results: dict = {
        "gpu": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "date": datetime.date.today().isoformat(),
    }
    print(json.dumps(results))
    if not args.skip_kernels:
        results["kernels"] = [row for seq in args.seqs for row in kernel_variants(seq)]
        for row in results["kernels"]:
            print("kernel", json.dumps(row))
    hf, hf_rope, ours, config = llama_attention_pair()
    results["module"] = [module_vs_transformers(seq, hf, hf_rope, ours, config) for seq in args.seqs]
    for row in results["module"]:
        print(
            f"module seq={row['seq']}: transformers {row['transformers_ms']:.2f} ms, ours {row['ours_ms']:.2f} ms, "
            f"ratio {row['ratio']:.2f}x, max|diff| {row['max_abs_diff']:.3g}"
        )
    del hf, ours
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    results["cached_vs_full_rel_diff"] = cached_vs_full_logits()
    print("cached vs full (relative max diff)", json.dumps(results["cached_vs_full_rel_diff"]))
    results["long_context"] = [
        long_context_inference(args.long_preset, args.long_context, w) for w in (args.window, None)
    ]
    for row in results["long_context"]:
        print("long context", json.dumps(row))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
