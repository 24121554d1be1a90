"""Serving throughput (issue 11): our LLMEngine vs transformers' batched ``generate`` on the same requests, one run.

Workload: N requests arriving together, random prompts of 32-1,024 tokens and outputs of 16-512 tokens (greedy,
eos ignored, so every request produces exactly its length). Model: the issue's 1.1B shape (d2048, 22 layers, GQA
32/4, vocab 32000), random weights, bf16 on CUDA.

- ours: all requests added at once, ``step()`` until done (continuous batching, chunked prefill, paged KV cache).
  TTFT = first token time - arrival; inter-token latency = gaps between a request's consecutive tokens.
- transformers: one left-padded batch of all requests through ``generate`` with max_new_tokens = the longest
  output (a static batch runs until its longest member ends); its useful tokens are the requested ones.
- memory: peak KV blocks in use x block bytes vs a static cache sized batch x longest sequence.

    PYTHONPATH=. python bench/serve_engine.py                    # CUDA, 64 requests, the 1.1B shape
    PYTHONPATH=. python bench/serve_engine.py --tiny             # CPU smoke check (tiny model, small load)
    PYTHONPATH=. python bench/serve_engine.py --eager            # CUDA without graphs (they are on by default there)
    PYTHONPATH=. python bench/serve_engine.py --host-overhead --skip-transformers
        # the full 64-request load on a 2-layer dim-64 model (CPU): what a step costs the host, model aside
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time

import torch

from llm_platform.trainer.inference import EngineConfig, LLMEngine, SamplingParams
from llm_platform.trainer.model.config import ModelConfig
from llm_platform.trainer.model.transformer import Transformer

SHAPE_1B = dict(vocab_size=32000, dim=2048, n_layers=22, n_heads=32, num_kv_heads=4, ffn_dim=5632, max_seq_len=2048)
SHAPE_TINY = dict(vocab_size=512, dim=64, n_layers=2, n_heads=4, num_kv_heads=2, ffn_dim=128, max_seq_len=256)
SHAPE_HOST = {**SHAPE_TINY, "max_seq_len": 2048}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


def workload(n: int, prompt_range: tuple[int, int], output_range: tuple[int, int], vocab: int, seed: int):
    rng = random.Random(seed)
    return [
        ([rng.randrange(vocab) for _ in range(rng.randint(*prompt_range))], rng.randint(*output_range))
        for _ in range(n)
    ]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_ours(model: Transformer, requests, config: EngineConfig, device: str) -> dict:
    engine = LLMEngine(model, None, config)
    engine.generate([p[:64] for p, _ in requests[:4]], SamplingParams(max_tokens=4, temperature=0))  # warm-up
    token_times: dict[str, list[float]] = {}
    peak_blocks = 0
    sync(device)
    start = time.monotonic()
    for i, (prompt, length) in enumerate(requests):
        engine.add_request(str(i), prompt, SamplingParams(max_tokens=length, temperature=0, ignore_eos=True))
    arrival = {str(i): start for i in range(len(requests))}
    steps = 0
    while engine.has_unfinished_requests():
        outs = engine.step()
        steps += 1
        now = time.monotonic()
        peak_blocks = max(peak_blocks, engine.stats().kv_blocks_used)
        for out in outs:
            token_times.setdefault(out.request_id, []).append(now)
    sync(device)
    wall = time.monotonic() - start
    tokens = sum(length for _, length in requests)
    ttft = [times[0] - arrival[rid] for rid, times in token_times.items()]
    gaps = [b - a for times in token_times.values() for a, b in zip(times, times[1:], strict=False)]
    block_bytes = engine.cache.memory_bytes() // sum(g.allocator.num_blocks for g in engine.cache.groups)
    return {
        "wall_s": wall,
        "tokens": tokens,
        "tok_per_s": tokens / wall,
        "steps": steps,
        "step_ms": wall / steps * 1e3,
        "ttft_p50_ms": percentile(ttft, 50) * 1e3,
        "ttft_p99_ms": percentile(ttft, 99) * 1e3,
        "itl_p50_ms": percentile(gaps, 50) * 1e3,
        "itl_p99_ms": percentile(gaps, 99) * 1e3,
        "peak_kv_blocks": peak_blocks,
        "peak_kv_bytes": peak_blocks * block_bytes,
        "preemptions": engine.stats().num_preemptions,
    }


def run_transformers(model: Transformer, requests, device: str, dtype: torch.dtype) -> dict:
    from transformers import AutoModelForCausalLM

    from llm_platform.trainer.model.hf import save_pretrained

    with tempfile.TemporaryDirectory() as folder:
        save_pretrained(model, folder)
        hf = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
    longest_prompt = max(len(p) for p, _ in requests)
    longest_output = max(n for _, n in requests)
    ids = torch.zeros(len(requests), longest_prompt, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, (prompt, _) in enumerate(requests):
        ids[row, longest_prompt - len(prompt) :] = torch.tensor(prompt)
        mask[row, longest_prompt - len(prompt) :] = 1
    with torch.no_grad():  # warm-up
        hf.generate(ids[:4, -64:].to(device), max_new_tokens=4, do_sample=False, pad_token_id=0)
    sync(device)
    start = time.monotonic()
    with torch.no_grad():
        hf.generate(
            ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=longest_output,
            min_new_tokens=longest_output,
            do_sample=False,
            pad_token_id=0,
        )
    sync(device)
    wall = time.monotonic() - start
    useful = sum(n for _, n in requests)
    return {"wall_s": wall, "tokens": useful, "tok_per_s": useful / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="CPU smoke check: tiny model, 8 short requests")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--device", default=None)
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--max-batched-tokens", type=int, default=4096)
    parser.add_argument("--host-overhead", action="store_true", help="full load on a 2-layer dim-64 model (CPU)")
    parser.add_argument("--eager", action="store_true", help="EngineConfig(cuda_graphs=False): no CUDA graphs")
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the results here too")
    args = parser.parse_args()

    small = args.tiny or args.host_overhead
    device = args.device or ("cpu" if small or not torch.cuda.is_available() else "cuda")
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    shape = SHAPE_TINY if args.tiny else SHAPE_HOST if args.host_overhead else SHAPE_1B
    n = 8 if args.tiny else args.requests
    prompts, outputs = ((8, 64), (4, 32)) if args.tiny else ((32, 1024), (16, 512))
    requests = workload(n, prompts, outputs, shape["vocab_size"], args.seed)

    torch.manual_seed(args.seed)
    with torch.device(device):
        model = Transformer(ModelConfig(**shape))
    model.init_weights(seed=args.seed)
    model = model.to(dtype).eval()
    longest = max(len(p) + o for p, o in requests)
    config = EngineConfig(
        block_size=args.block_size,
        max_num_seqs=n,
        max_num_batched_tokens=args.max_batched_tokens,
        num_blocks=n * -(-longest // args.block_size),
        enable_prefix_caching=False,
        cuda_graphs=False if args.eager else None,
    )
    ours = run_ours(model, requests, config, device)
    static_bytes = 2 * shape["n_layers"] * n * longest * shape["num_kv_heads"] * (shape["dim"] // shape["n_heads"])
    static_bytes *= torch.tensor([], dtype=dtype).element_size()
    result = {"device": device, "dtype": str(dtype), "requests": n, "shape": shape, "ours": ours}
    result["static_kv_bytes"] = static_bytes
    result["kv_memory_ratio"] = ours["peak_kv_bytes"] / static_bytes
    if not args.skip_transformers:
        result["transformers"] = run_transformers(model, requests, device, dtype)
        result["throughput_ratio"] = ours["tok_per_s"] / result["transformers"]["tok_per_s"]

    print(f"{n} requests on {device} ({dtype}); prompts {prompts}, outputs {outputs}")
    print(
        f"ours: {ours['tok_per_s']:.1f} tok/s over {ours['wall_s']:.2f} s, {ours['steps']} steps "
        f"({ours['step_ms']:.2f} ms/step)"
    )
    print(f"  TTFT p50 {ours['ttft_p50_ms']:.1f} ms  p99 {ours['ttft_p99_ms']:.1f} ms")
    print(f"  inter-token p50 {ours['itl_p50_ms']:.1f} ms  p99 {ours['itl_p99_ms']:.1f} ms")
    print(
        f"  KV memory: peak {ours['peak_kv_blocks']} blocks = {ours['peak_kv_bytes'] / 2**20:.1f} MiB vs static "
        f"cache {static_bytes / 2**20:.1f} MiB ({result['kv_memory_ratio']:.2f}x); preemptions {ours['preemptions']}"
    )
    if "transformers" in result:
        hf = result["transformers"]
        print(f"transformers batched generate: {hf['tok_per_s']:.1f} tok/s over {hf['wall_s']:.2f} s")
        print(f"ratio ours / transformers: {result['throughput_ratio']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
