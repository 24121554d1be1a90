"""The OpenAI server under load (issue 12): N concurrent streaming requests over HTTP on loopback vs the same
requests given straight to the engine in-process, in one run; the ratio is what HTTP, SSE and the asyncio front cost.
The server runs as `llmp serve` in its own process, as deployed.

Each request: a distinct completion prompt, `--max-tokens` tokens (eos ignored, so every request produces exactly
that many), sampled with its own seed. Client-side timings through the `openai` package: TTFT = first text chunk
- request sent; inter-token latency = gaps between a stream's consecutive chunks. The server's own counters must add
up to what the clients received (checked, and printed).

    PYTHONPATH=. python bench/serve_load.py                      # the tiny test model on CPU, 200 streams
    PYTHONPATH=. python bench/serve_load.py --model runs/quickstart/pretrain --requests 500
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai

from llm_platform.cli_serve import resolve_model
from llm_platform.trainer.inference.engine import EngineConfig, LLMEngine
from llm_platform.trainer.inference.params import SamplingParams


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


def prompts(n: int) -> list[str]:
    return [f"def function_{i}(value):\n    return" for i in range(n)]


async def one_stream(client: openai.AsyncOpenAI, prompt: str, seed: int, max_tokens: int) -> dict:
    sent = time.perf_counter()
    arrivals, usage = [], None
    stream = await client.completions.create(
        model="bench",
        prompt=prompt,
        max_tokens=max_tokens,
        temperature=0.8,
        seed=seed,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            arrivals.append(time.perf_counter())
        if chunk.usage:
            usage = chunk.usage
    return {
        "ttft": arrivals[0] - sent,
        "gaps": [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)],
        "usage": usage,
    }


def start_server(model: Path, port: int, n: int, max_batch: int) -> subprocess.Popen:
    """`llmp serve` in its own process, as deployed (the clients here must not share its interpreter)."""
    command = [sys.executable, "-m", "llm_platform.cli", "serve", str(model), "--name", "bench", "--port", str(port)]
    command += ["--max-batch", str(max_batch), "--max-pending", str(n + 8)]
    server = subprocess.Popen(command)
    deadline = time.monotonic() + 120
    while True:
        assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)


def over_http(model: Path, n: int, max_tokens: int, max_batch: int) -> dict:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = start_server(model, port, n, max_batch)

    async def main():
        limits = httpx.Limits(max_connections=n + 8)
        async with openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{port}/v1",
            api_key="none",
            max_retries=0,
            timeout=600,
            http_client=openai.DefaultAsyncHttpxClient(limits=limits),
        ) as client:
            start = time.perf_counter()
            results = await asyncio.gather(*(one_stream(client, p, i, max_tokens) for i, p in enumerate(prompts(n))))
            return results, time.perf_counter() - start

    results, seconds = asyncio.run(main())
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    server.send_signal(signal.SIGTERM)
    server.wait(60)
    tokens = sum(r["usage"].completion_tokens for r in results)
    counted = next(
        float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("vllm:generation_tokens_total{")
    )
    assert counted == tokens, f"the server counted {counted} generated tokens, the clients received {tokens}"
    gaps = [g for r in results for g in r["gaps"]]
    return {
        "requests": len(results),
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "ttft_p50": percentile([r["ttft"] for r in results], 50),
        "ttft_p99": percentile([r["ttft"] for r in results], 99),
        "itl_p50": percentile(gaps, 50),
        "itl_p99": percentile(gaps, 99),
        "itl_mean": statistics.fmean(gaps) if gaps else float("nan"),
    }


def in_process(model: Path, n: int, max_tokens: int, max_batch: int) -> dict:
    engine = LLMEngine.from_pretrained(model, config=EngineConfig(max_num_seqs=max_batch))
    start = time.perf_counter()
    for i, prompt in enumerate(prompts(n)):
        params = SamplingParams(max_tokens=max_tokens, temperature=0.8, seed=i, ignore_eos=True)
        engine.add_request(str(i), prompt, params)
    tokens = 0
    while engine.has_unfinished_requests():
        for output in engine.step():
            if output.finished:
                tokens += len(output.outputs[0].token_ids)
    seconds = time.perf_counter() - start
    return {"requests": n, "seconds": seconds, "tokens_per_s": tokens / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a model folder or STORE/STAGE (default: the tiny test model, built now)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            model = resolve_model(args.model)
        else:
            from tests.services.serving.tiny_model import build

            model = build(Path(tmp))
        http = over_http(model, args.requests, args.max_tokens, args.max_batch)
        direct = in_process(model, args.requests, args.max_tokens, args.max_batch)
    print(f"{args.requests} streams x {args.max_tokens} tokens, max_batch {args.max_batch}, model {model.name}")
    print(f"  engine in-process : {direct['tokens_per_s']:8.1f} tok/s ({direct['seconds']:.2f} s)")
    print(f"  server over HTTP  : {http['tokens_per_s']:8.1f} tok/s ({http['seconds']:.2f} s), none lost")
    print(f"  ratio HTTP/engine : {http['tokens_per_s'] / direct['tokens_per_s']:.2f}")
    print(f"  TTFT        p50 {http['ttft_p50'] * 1e3:7.1f} ms   p99 {http['ttft_p99'] * 1e3:7.1f} ms")
    print(f"  inter-token p50 {http['itl_p50'] * 1e3:7.1f} ms   p99 {http['itl_p99'] * 1e3:7.1f} ms")


if __name__ == "__main__":
    main()
