"""Batch-1 decode benchmark (issue 11), ours vs transformers in one run, on one CUDA GPU.

For the 1.1B Llama shape (dim 2048, 22 layers, 32 heads / 4 KV heads, ffn 5632, vocab 32000; random bf16 weights),
a 128-token prompt and 256 new tokens, greedy:
  * transformers ``generate`` (eager, dynamic cache) and our eager ``generate`` (static cache);
  * ``FastDecoder`` in bf16, INT8 (per channel) and INT4 (group 128);
  * speculative decoding, target = the 1.1B model, draft = its first ``--draft-layers`` blocks with the same
    embedding and head (2 blocks: 6.7x fewer weight bytes), k draft tokens a round, greedy and temperature 1:
    acceptance rate and speed-up over FastDecoder bf16. Acceptance is a property of a trained pair; with random
    weights it is swept instead (``--late-block-scale``: the target's blocks past the draft's have their residual
    outputs scaled, 0 making the target equal to the draft, the ceiling), so read the rows as the speed-up the
    implementation turns a given acceptance rate into.
For the 7B shape (Llama-2-7B): ``FastDecoder`` bf16 and INT4 against the weight-bandwidth bound (weight bytes read
per token / the measured device-to-device copy bandwidth).
Optionally (``--long-context N``) one layer's decode attention over an N-token cache, SDPA vs split-KV (flash decoding).

Each row: tokens per second over the whole generate call (prefill included) and the ratio to transformers' eager
generate; correctness columns compare logits with the model's own eager forward. ``--check`` first compares every
execution mode (eager / compiled x without / with CUDA graph) token by token against the model's forward over a
StaticKVCache.

    PYTHONPATH=. python bench/decode.py --check --big --long-context 32768 --late-block-scale 1 0.1 0 --json r.json
    PYTHONPATH=. python bench/decode.py --tiny                     # CPU smoke check of every path, seconds
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
import traceback

import torch
from torch.nn import functional as F

from llm_platform.trainer.inference.fast_decode import FastDecoder
from llm_platform.trainer.inference.generate import generate
from llm_platform.trainer.inference.quantize import Int4Linear, Int8Linear, quantize_model
from llm_platform.trainer.inference.speculative import speculative_generate
from llm_platform.trainer.model import ModelConfig
from llm_platform.trainer.model.transformer import Transformer

SHAPES = {
    "1.1b": dict(vocab_size=32000, dim=2048, n_layers=22, n_heads=32, num_kv_heads=4, ffn_dim=5632),
    "7b": dict(vocab_size=32000, dim=4096, n_layers=32, n_heads=32, num_kv_heads=32, ffn_dim=11008),
    "tiny": dict(vocab_size=512, dim=128, n_layers=4, n_heads=4, num_kv_heads=2, ffn_dim=384),
}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int) -> tuple[float, object]:
    """Median seconds of ``fn`` over ``repeats`` calls (after the caller's warm-up) and the last result."""
    times, result = [], None
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], result


def build(shape: str, device: str, dtype: torch.dtype, max_seq_len: int, seed: int = 0) -> Transformer:
    config = ModelConfig(**SHAPES[shape], max_seq_len=max_seq_len)
    with torch.device(device):
        model = Transformer(config)
    model.init_weights(seed=seed)
    return model.to(dtype).eval().requires_grad_(False)


def decode_bytes(model: torch.nn.Module) -> int:
    """Bytes a decode step must read: every linear weight (as stored for its kernel), norms, one embedding row."""
    total = 0
    for module in model.modules():
        if isinstance(module, Int4Linear):
            weight = module.kernel_weight if module.kernel_weight is not None else module.packed
            total += weight.nbytes + module.scales.nbytes + module.offsets.nbytes
        elif isinstance(module, Int8Linear):
            total += module.weight.nbytes + module.scales.nbytes
        elif isinstance(module, torch.nn.Linear):
            total += module.weight.nbytes
        elif isinstance(module, torch.nn.Embedding):
            total += module.weight[0].nbytes
        elif hasattr(module, "weight") and isinstance(module.weight, torch.nn.Parameter) and module.weight.dim() == 1:
            total += module.weight.nbytes  # norm gains
        bias = getattr(module, "bias", None)
        if isinstance(bias, torch.Tensor):
            total += bias.nbytes
    return total


def copy_bandwidth(device: str) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read plus written (median of 10, 2 GiB)."""
    if device != "cuda":
        return float("nan")
    src = torch.randn(2**29, device=device)  # 2 GiB of float32
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    seconds, _ = timed(lambda: dst.copy_(src), device, 10)
    return 2 * 2**31 / seconds


def timed_loop(fn, device: str, calls: int) -> float:
    """Mean seconds per call of a short ``fn`` over ``calls`` back-to-back calls, after three warm-up calls."""
    for _ in range(3):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(device)
    return (time.perf_counter() - start) / calls


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def same_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.device = "cpu" if args.tiny else "cuda"
        self.dtype = torch.float32 if args.tiny else torch.bfloat16
        self.rows: list[dict] = []
        self.baseline_tps: float | None = None
        self.baseline_shape: str | None = None  # ratios only against transformers on the same shape
        self.tag = "bf16" if self.dtype == torch.bfloat16 else "fp32"

    def section(self, name: str, fn) -> None:
        """Runs one part; a failure is reported as a row and the run goes on (device time is scarce)."""
        start = time.perf_counter()
        try:
            fn()
        except Exception as error:  # noqa: BLE001 - report and continue
            traceback.print_exc()
            self.add(name, error=f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
        print(f"[{name}: {time.perf_counter() - start:.1f} s]", flush=True)

    def add(self, name: str, **fields) -> None:
        row = {"name": name, **fields}
        same_shape = self.baseline_shape is not None and name.startswith(self.baseline_shape + " ")
        if "tok_s" in row and self.baseline_tps and same_shape and "step_ms" not in row:
            row["x_transformers"] = row["tok_s"] / self.baseline_tps
        self.rows.append(row)
        print(json.dumps(row), flush=True)

    # ------------------------------------------------------------------ parts
    def prompt(self, vocab: int) -> list[int]:
        g = torch.Generator().manual_seed(1)
        return torch.randint(0, vocab, (self.args.prompt,), generator=g).tolist()

    def transformers_eager(self, shape: str) -> None:
        from transformers import LlamaConfig, LlamaForCausalLM

        s = SHAPES[shape]
        config = LlamaConfig(
            vocab_size=s["vocab_size"],
            hidden_size=s["dim"],
            intermediate_size=s["ffn_dim"],
            num_hidden_layers=s["n_layers"],
            num_attention_heads=s["n_heads"],
            num_key_value_heads=s["num_kv_heads"],
            max_position_embeddings=self.args.max_len,
            attn_implementation="sdpa",
        )
        with torch.device(self.device):
            model = LlamaForCausalLM(config).to(self.dtype).eval()
        ids = torch.tensor([self.prompt(s["vocab_size"])], device=self.device)
        n = self.args.new
        kwargs = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
        with torch.no_grad():
            model.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=0)
            seconds, _ = timed(lambda: model.generate(ids, **kwargs), self.device, self.args.repeats_slow)
        self.baseline_tps, self.baseline_shape = n / seconds, shape
        self.add(f"{shape} transformers generate (eager, {str(self.dtype)[6:]})", tok_s=n / seconds, seconds=seconds)

    def ours_eager(self, model: Transformer, shape: str) -> None:
        prompt, n = self.prompt(model.config.vocab_size), self.args.new
        generate(model, prompt, max_new_tokens=4, temperature=0)
        seconds, _ = timed(
            lambda: generate(model, prompt, max_new_tokens=n, temperature=0), self.device, self.args.repeats_slow
        )
        self.add(f"{shape} ours generate (eager, static cache)", tok_s=n / seconds, seconds=seconds)

    def fast(self, model: Transformer, label: str, bandwidth: float, reference: list[int] | None = None) -> list[int]:
        prompt, n = self.prompt(model.config.vocab_size), self.args.new
        compile_start = time.perf_counter()
        decoder = FastDecoder(model, max_len=self.args.max_len)
        decoder.generate(prompt, n)  # compiles and captures
        compile_s = time.perf_counter() - compile_start
        seconds, tokens = timed(lambda: decoder.generate(prompt, n), self.device, self.args.repeats)
        prefill_s, _ = timed(lambda: decoder.prefill(torch.tensor([prompt])), self.device, 3)
        # correctness: the graph's logits at the last position vs the model's eager forward over the whole sequence
        seq = torch.tensor([prompt + tokens], device=self.device)
        with torch.no_grad():
            eager = model(seq)[0, -1].float()
        graph = decoder.logits(seq[:, -1:], seq.shape[1] - 1)[-1].clone()
        nbytes = decode_bytes(model)
        row = dict(
            tok_s=n / seconds,
            decode_tok_s=(n - 1) / max(seconds - prefill_s, 1e-9),
            seconds=seconds,
            prefill_ms=prefill_s * 1e3,
            compile_and_capture_s=compile_s,
            weight_gb=nbytes / 1e9,
            bound_tok_s=bandwidth / nbytes,
            logits_rel_err_vs_eager=rel(graph, eager),
            greedy_argmax_equal=bool(graph.argmax() == eager.argmax()),
        )
        row["fraction_of_bound"] = row["decode_tok_s"] / row["bound_tok_s"]
        if reference is not None:
            row["same_tokens_as_bf16"] = same_prefix(tokens, reference)
        self.add(label, **row)
        return tokens

    def speculative(self, model: Transformer, shape: str, bf16_tps: float | None) -> None:
        c = model.config
        draft_config = ModelConfig(**{**SHAPES[shape], "n_layers": self.args.draft_layers}, max_seq_len=c.max_seq_len)
        with torch.device(self.device):
            draft = Transformer(draft_config).to(self.dtype).eval().requires_grad_(False)
        draft.load_state_dict(model.state_dict(), strict=False)  # first blocks, embedding, final norm, head
        prompt, n = self.prompt(c.vocab_size), self.args.new
        target_dec = FastDecoder(model, max_len=self.args.max_len)
        draft_dec = FastDecoder(draft, max_len=self.args.max_len)
        ratio = decode_bytes(model) / decode_bytes(draft)
        # Acceptance is a property of the trained pair; with random weights it is set here by damping the target's
        # blocks past the draft's (their residual outputs x scale): 0 makes the target equal the draft (the ceiling).
        blocks = model.layers[self.args.draft_layers :]
        late = [p for b in blocks for p in (b.attn.o_proj.weight, b.mlp.down_proj.weight)]
        originals = [p.clone() for p in late]
        runs = [(scale, k, t) for scale in self.args.late_block_scale for k in self.args.k for t in (0.0, 1.0)]
        for scale, k, temperature in runs:
            for param, original in zip(late, originals, strict=True):
                param.copy_(original * scale)

            def run(k=k, temperature=temperature):
                return speculative_generate(target_dec, draft_dec, prompt, n, k=k, temperature=temperature)

            run()  # compiles and captures the T = 1 and k + 1 graphs
            seconds, result = timed(run, self.device, self.args.repeats)
            row = dict(
                k=k,
                temperature=temperature,
                late_block_scale=scale,
                draft_bytes_ratio=ratio,
                tok_s=n / seconds,
                acceptance_rate=result.acceptance_rate,
                tokens_per_round=result.tokens_per_round,
            )
            if temperature == 0:  # lossless: the target's own greedy tokens (bf16: up to a near-tie)
                row["same_tokens_as_target_greedy"] = same_prefix(result.tokens, target_dec.generate(prompt, n))
            if bf16_tps:
                row["speedup_vs_fast_bf16"] = row["tok_s"] / bf16_tps
            self.add(f"{shape} speculative (draft = first {self.args.draft_layers} blocks)", **row)
        for param, original in zip(late, originals, strict=True):
            param.copy_(original)

    def bf16_and_speculative(self, shape: str, bandwidth: float, results: dict) -> None:
        model = build(shape, self.device, self.dtype, self.args.max_len)
        if not self.args.skip_baselines:
            self.section("ours eager", lambda: self.ours_eager(model, shape))
        label = f"{shape} FastDecoder {self.tag}"
        self.section("fast bf16", lambda: results.update(bf16=self.fast(model, label, bandwidth)))
        bf16_tps = next((r["tok_s"] for r in self.rows if r["name"] == label), None)
        self.section("speculative", lambda: self.speculative(model, shape, bf16_tps))

    def long_context(self, shape: str) -> None:
        """One layer's decode attention over a cache of N random keys: SDPA with the position mask vs split-KV
        (flash decoding, compiled) vs SDPA with no mask (the fused kernel's floor for the same bytes)."""
        from llm_platform.trainer.inference.fast_decode import split_kv_attention

        s, length = SHAPES[shape], self.args.long_context
        kv_heads, group, head = s["num_kv_heads"], s["n_heads"] // s["num_kv_heads"], s["dim"] // s["n_heads"]
        q = torch.randn(1, kv_heads, group, head, device=self.device, dtype=self.dtype)
        k, v = (torch.randn(1, kv_heads, length, head, device=self.device, dtype=self.dtype) for _ in range(2))
        allowed = torch.ones(group, length, dtype=torch.bool, device=self.device)
        allowed[:, -3:] = False  # the last slots not yet written
        additive = torch.zeros(allowed.shape, dtype=self.dtype, device=self.device).masked_fill(~allowed, -torch.inf)
        scale = head**-0.5
        reference = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=additive, scale=scale)
        variants = {"sdpa, masked": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=additive, scale=scale)}
        variants["sdpa, no mask (floor)"] = lambda: F.scaled_dot_product_attention(q, k, v, scale=scale)
        for splits in (16, 64):
            fn = split_kv_attention if self.device == "cpu" else torch.compile(split_kv_attention, dynamic=False)
            variants[f"split-KV x{splits}"] = lambda fn=fn, splits=splits: fn(q, k, v, allowed, scale, splits)
        kv_bytes = 2 * k.nbytes
        for name, fn in variants.items():
            out = fn()
            seconds = timed_loop(fn, self.device, 10 if self.device == "cpu" else 200)
            self.add(
                f"{shape} one layer's decode attention, {length} cached tokens",
                attention=name,
                step_ms=seconds * 1e3,
                kv_tb_s=kv_bytes / seconds / 1e12,
                rel_err_vs_sdpa=rel(out, reference) if "floor" not in name else None,
            )

    def check(self) -> None:
        """Correctness of every execution mode on this device: teacher-forced logits of the decoder, token by token,
        against the model's own forward over a StaticKVCache (the ``generate`` path), and greedy tokens."""
        from llm_platform.trainer.inference.kv_cache import StaticKVCache

        cases = [("tiny", torch.float32)] + ([] if self.args.tiny else [("1.1b", self.dtype)])
        modes = [(False, False), (True, False)]
        if self.device == "cuda":
            modes += [(False, True), (True, True)]
        for shape, dtype in cases:
            model = build(shape, self.device, dtype, 128)
            g = torch.Generator().manual_seed(3)
            ids = torch.randint(0, model.config.vocab_size, (1, 24), generator=g).to(self.device)
            cache = StaticKVCache(model.config, 1, 64, device=self.device, dtype=dtype)
            with torch.no_grad():
                reference = [model(ids[:, :16], cache=cache, start_pos=0)[0, -1].float()]
                reference += [model(ids[:, i : i + 1], cache=cache, start_pos=i)[0, -1].float() for i in range(16, 24)]
            expected = generate(model, ids[0, :16].tolist(), max_new_tokens=16, temperature=0)
            for compile_, graph in modes:
                decoder = FastDecoder(model, max_len=64, compile=compile_, cuda_graph=graph)
                logits = [decoder.prefill(ids[:, :16])[-1]]
                logits += [decoder.logits(ids[:, i : i + 1], i)[-1].clone() for i in range(16, 24)]
                errors = [rel(a, b) for a, b in zip(logits, reference, strict=True)]
                tokens = decoder.generate(ids[0, :16].tolist(), 16)
                self.add(
                    f"check {shape} {str(dtype)[6:]}",
                    compile=compile_,
                    cuda_graph=graph,
                    max_rel_err_per_step=max(errors),
                    rel_err_steps=[round(e, 5) for e in errors],
                    greedy_same_prefix=same_prefix(tokens, expected),
                    tokens=tokens if tokens != expected else "same",
                    expected=expected if tokens != expected else "",
                )

    def gpu_kernels(self) -> None:
        """The int4 CUDA kernel (tinygemm) against its dequantized reference, on fresh random weights."""
        layer = torch.nn.Linear(4096, 4096, bias=False, device=self.device, dtype=self.dtype)
        x = torch.randn(3, 4096, device=self.device, dtype=self.dtype)
        for name, module in (("int8", Int8Linear.from_linear(layer)), ("int4", Int4Linear.from_linear(layer))):
            reference = x.float() @ module.dequantized(torch.float32).T
            if name == "int4":
                kernel = "int4pack_mm" if module.kernel_weight is not None else "dequantize, then matmul"
            else:
                kernel = "int8pack_mm" if self.device == "cpu" else "dequantize in the matmul"
            self.add(f"{name} linear on {self.device}", kernel=kernel, rel_err_vs_dequantized=rel(module(x), reference))

    # ------------------------------------------------------------------ the run
    def run(self) -> None:
        a = self.args
        shape = "tiny" if a.tiny else "1.1b"
        bandwidth = copy_bandwidth(self.device)
        env = dict(
            date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            torch=torch.__version__,
            device=torch.cuda.get_device_name() if self.device == "cuda" else "cpu",
            copy_bandwidth_tb_s=bandwidth / 1e12,
        )
        print(json.dumps(env), flush=True)
        self.section("kernels", self.gpu_kernels)
        if a.check:
            self.section("check", self.check)
        if not a.skip_baselines:
            self.section("transformers", lambda: self.transformers_eager(shape))
        results: dict[str, list[int]] = {}
        self.section("bf16 and speculative", lambda: self.bf16_and_speculative(shape, bandwidth, results))
        for scheme in ("int8", "int4"):

            def quantized(scheme=scheme):
                q = quantize_model(build(shape, self.device, self.dtype, a.max_len), scheme, group_size=a.group_size)
                self.fast(q, f"{shape} FastDecoder {scheme}", bandwidth, results.get("bf16"))

            self.section(f"fast {scheme}", quantized)
        if a.big:
            big = "tiny" if a.tiny else "7b"
            for scheme in ("bf16", "int4"):

                def large(scheme=scheme):
                    m = build(big, self.device, self.dtype, a.max_len)
                    if scheme != "bf16":
                        quantize_model(m, scheme, group_size=a.group_size)
                    self.fast(m, f"{big} FastDecoder {scheme if scheme != 'bf16' else self.tag}", bandwidth)

                self.section(f"{big} {scheme}", large)
        if a.long_context:
            self.section("long context", lambda: self.long_context(shape))
        self.summary(env)

    def summary(self, env: dict) -> None:
        print("\n| run | tok/s | x transformers eager | notes |\n| --- | --- | --- | --- |")
        for r in self.rows:
            if "error" in r:
                print(f"| {r['name']} | failed | | {r['error']} |")
                continue
            if "tok_s" not in r:
                print(f"| {r['name']} | | | {json.dumps({k: v for k, v in r.items() if k != 'name'})} |")
                continue
            notes = []
            for key in ("decode_tok_s", "bound_tok_s", "fraction_of_bound", "acceptance_rate", "tokens_per_round"):
                if key in r:
                    notes.append(f"{key}={r[key]:.3g}")
            keys = ("k", "temperature", "late_block_scale", "speedup_vs_fast_bf16", "logits_rel_err_vs_eager")
            keys += ("attention",)
            for key in keys:
                if key in r:
                    notes.append(f"{key}={r[key]:.3g}" if isinstance(r[key], float) else f"{key}={r[key]}")
            ratio = f"{r['x_transformers']:.1f}x" if "x_transformers" in r else ""
            print(f"| {r['name']} | {r['tok_s']:.1f} | {ratio} | {', '.join(notes)} |")
        if self.args.json:
            with open(self.args.json, "w") as f:
                json.dump({"env": env, "args": vars(self.args), "rows": self.rows}, f, indent=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CPU smoke check with a tiny model")
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=256)
    parser.add_argument("--max-len", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--repeats-slow", type=int, default=1, help="repeats of the eager baselines")
    parser.add_argument("--group-size", type=int, default=128)
    parser.add_argument("--k", type=int, nargs="+", default=[4])
    parser.add_argument("--draft-layers", type=int, default=2)
    parser.add_argument("--big", action="store_true", help="also the 7B shape (bf16 and int4)")
    parser.add_argument("--skip-baselines", action="store_true", help="skip the eager generate of both")
    parser.add_argument("--check", action="store_true", help="first check every mode's logits and tokens")
    parser.add_argument(
        "--late-block-scale", type=float, nargs="+", default=[1.0], help="speculative: damp the target's later blocks"
    )
    parser.add_argument("--long-context", type=int, default=0, help="also time decode attention at this cache size")
    parser.add_argument("--json", help="write every row here")
    args = parser.parse_args()
    if args.tiny:
        args.prompt, args.new, args.max_len, args.repeats = min(args.prompt, 16), min(args.new, 16), 64, 1
        args.group_size = min(args.group_size, 32)
        args.long_context = min(args.long_context, 256)
    elif not torch.cuda.is_available():
        parser.error("needs a CUDA GPU; use --tiny for the CPU smoke check")
    Bench(args).run()


if __name__ == "__main__":
    main()
