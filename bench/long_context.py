"""Long-context training (issue 16) on one CUDA GPU: the 1B preset at 32K, 64K and 128K tokens, and a needle in a
haystack read back through the inference engine.

Phases
    documents   document-masked attention (packed documents of random lengths) at 16K tokens: FlexAttention against
                a dense SDPA mask (max difference of outputs and gradients) and against plain causal attention
                (cuDNN, no mask), forward + backward times.
    retrieval   a randomly initialised llama-1b learns a synthetic passkey task: filler text hides a needle
                `KEY d1..d5` (five distinct digits) at a random depth and ends with the question `KEY`; only the
                answer's digits are scored. First at 512 tokens (where retrieval is learned at all), then a few
                steps at 4K and 16K tokens.
    memory      the model keeps training on the same task at 32K, 64K and 128K tokens (micro-batch 1), once per
                memory option: no activation checkpointing, `selective`, `full`, and with `activation_offload`.
                Each option starts a fresh engine run from the weights so far (at a fifth of the learning rate,
                warmed up over its two steps) and reports peak GPU memory and tokens/s of its second step (the
                first warms up); one that runs out of memory is reported as OOM.
                Every option that ran passes its weights on, so the final model has had several steps at every
                length, 128K included.
    needle      one passkey hidden in filler at several depths of prompts of 512 .. 128K tokens, asked at the end;
                the engine (`LLMEngine`, paged KV cache, chunked prefill) decodes five digits greedily, and the
                report says which it retrieved (chance: 1 in 30,240).

Usage (one H200; about 5 minutes):
    PYTHONPATH=. python3 bench/long_context.py --json long_context.json
    PYTHONPATH=. python3 bench/long_context.py --device cpu --tiny     # the smoke mode a test runs

This script and what it imports must not need pydantic (the GPU machine has none).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import io
import json
import time

import numpy as np
import torch
from rich.console import Console

from llm_platform.trainer.inference.engine import EngineConfig, LLMEngine
from llm_platform.trainer.inference.params import SamplingParams
from llm_platform.trainer.model import get_config, num_params
from llm_platform.trainer.model.document_mask import DocumentMask
from llm_platform.trainer.model.kernels import attention
from llm_platform.trainer.model.transformer import Transformer
from llm_platform.trainer.train.config import TrainConfig
from llm_platform.trainer.train.distributed import DistEnv
from llm_platform.trainer.train.loop import train
from llm_platform.trainer.train.loss import IGNORE_INDEX
from llm_platform.trainer.train.objective import NextTokenLoss

# token ids of the synthetic task (any tokenizer's ids would do: the model is trained from scratch on it)
DIGITS = np.arange(10, 20)
KEYS = np.arange(20, 52)  # needle markers KEY_0 .. KEY_31
FILLER_VOCAB = (100, 500)  # filler "words"
SENTENCES = 64  # distinct filler sentences of 12 words: a haystack with structure, like repeated prose
PASSKEY_DIGITS = 5

OPTIONS = {  # name -> (activation_checkpointing, activation_offload)
    "none": ("none", False),
    "selective": ("selective", False),
    "selective+offload": ("selective", True),
    "full": ("full", False),
    "full+offload": ("full", True),
}


@dataclasses.dataclass(frozen=True)
class Plan:
    preset: dict
    curriculum: tuple[tuple[int, int, int], ...]  # retrieval training: (sequence length, batch, steps) in turn
    lengths: dict[int, list[str]]  # sequence length -> memory options to measure
    needle_lengths: dict[int, tuple[float, ...]]  # prompt length -> depths of the needle
    lr: float
    document_len: int  # tokens of the document-masked attention comparison


GPU = Plan(
    preset=dict(preset="llama-1b"),
    curriculum=((512, 16, 300), (4096, 2, 40), (16384, 1, 10)),
    lengths={
        32768: ["none", "selective", "selective+offload", "full"],
        65536: ["selective", "full"],
        131072: ["selective", "full", "full+offload"],
    },
    needle_lengths={512: (0.1, 0.5, 0.9), 4096: (0.1, 0.5, 0.9), 32768: (0.5,), 131072: (0.25, 0.75)},
    lr=5e-4,
    document_len=16384,
)
TINY = Plan(
    preset=dict(preset="llama-tiny", max_seq_len=512),
    curriculum=((128, 8, 20), (256, 2, 4)),
    lengths={256: ["none", "selective+offload"], 512: ["full"]},
    needle_lengths={128: (0.5,), 512: (0.5,)},
    lr=2e-3,
    document_len=256,
)


# ------------------------------------------------------------------------------------------------ the passkey task
def _filler(rng: np.random.Generator, length: int, sentences: np.ndarray) -> np.ndarray:
    picks = sentences[rng.integers(0, len(sentences), length // sentences.shape[1] + 1)]
    return picks.reshape(-1)[:length]


def passkey(rng: np.random.Generator) -> np.ndarray:
    """Five distinct digits (1 in 30,240 to guess)."""
    return rng.permutation(DIGITS)[:PASSKEY_DIGITS]


def haystack(rng: np.random.Generator, length: int, depth: float, key: int, code: np.ndarray, sentences: np.ndarray):
    """`length` tokens of filler with the needle `key d1..d5` at `depth` (0: first, 1: as late as the question
    allows), ending with the question `key`."""
    tokens = _filler(rng, length, sentences)
    at = int(depth * (length - 2 * (PASSKEY_DIGITS + 1)))
    tokens[at] = key
    tokens[at + 1 : at + 1 + PASSKEY_DIGITS] = code
    tokens[-1] = key
    return tokens


def passkey_sequence(rng: np.random.Generator, length: int, sentences: np.ndarray):
    """(tokens [length + 1], scored [length + 1]): a haystack with the needle at a random depth, the question, and
    its answer; only the answer's digits are scored."""
    code, key = passkey(rng), rng.choice(KEYS)
    prompt = haystack(rng, length + 1 - PASSKEY_DIGITS, rng.random(), key, code, sentences)
    tokens = np.concatenate([prompt, code])
    scored = np.zeros(length + 1, dtype=bool)
    scored[-PASSKEY_DIGITS:] = True
    return tokens, scored


class PasskeyLoader:
    """Micro-batches of passkey sequences as the engine's objectives take them (inputs, labels with -100 on the
    unscored tokens); the loop's loader interface."""

    def __init__(self, length: int, batch: int, device: torch.device, seed: int = 0) -> None:
        self.length, self.batch, self.device = length, batch, device
        self.rng = np.random.default_rng(seed)
        self.sentences = filler_sentences()

    def next_step(self) -> list[dict[str, torch.Tensor]]:
        rows = [passkey_sequence(self.rng, self.length, self.sentences) for _ in range(self.batch)]
        tokens = torch.from_numpy(np.stack([r[0] for r in rows]).astype(np.int64))
        scored = torch.from_numpy(np.stack([r[1] for r in rows]))
        labels = tokens.masked_fill(~scored, IGNORE_INDEX)
        return [{"input_ids": tokens[:, :-1].to(self.device), "labels": labels[:, 1:].to(self.device)}]

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def filler_sentences() -> np.ndarray:
    return np.random.default_rng(1234).integers(*FILLER_VOCAB, (SENTENCES, 12))


# ------------------------------------------------------------------------------------------------ phases
def _train(model, lr: float, loader, steps: int, checkpointing: str, offload: bool, device, warmup: int, console=None):
    """`steps` optimizer steps of the engine's loop (a fresh AdamW: each call warms its learning rate up again, so
    the first update of a new optimizer, about `lr` on every weight, does not knock out what was learned)."""
    config = TrainConfig(
        steps=steps,
        micro_batch=loader.batch,
        seq_len=loader.length,
        lr=lr,
        warmup_steps=warmup,
        schedule="constant",
        weight_decay=0.0,
        precision="bf16" if device.type == "cuda" else "fp32",
        activation_checkpointing=checkpointing,
        activation_offload=offload,
        log_every=max(1, steps // 20),
        device=device.type,
    )
    objective = NextTokenLoss(model, fused_loss=device.type == "cuda", offload_activations=offload)
    console = console or Console(file=io.StringIO())
    return train(model, config, loader, DistEnv(device=device), objective=objective, console=console)


def retrieval_phase(model, plan: Plan, device, console: Console) -> list[dict]:
    """The passkey task at growing lengths (the first stage learns retrieval, the later ones stretch it)."""
    rows = []
    for i, (length, batch, steps) in enumerate(plan.curriculum):
        loader = PasskeyLoader(length, batch, device, seed=i)
        t0 = time.perf_counter()
        warmup = 20 if i == 0 else min(5, steps)
        result = _train(model, plan.lr, loader, steps, "none", False, device, warmup=warmup, console=console)
        losses = [r["loss"] for r in result.records]
        rows.append(
            {
                "length": length,
                "batch": batch,
                "steps": steps,
                "loss_first": losses[0],
                "loss_last": losses[-1],
                "losses": losses,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        console.print({k: v for k, v in rows[-1].items() if k != "losses"})
    return rows


def _fresh_copy(config, state: dict, device) -> Transformer:
    """A new model on `device` with the weights in `state` (the loop applies checkpointing to the blocks it is
    given, once, so every option starts from a model of its own)."""
    with torch.device(device):
        clone = Transformer(copy.deepcopy(config))
    clone.load_state_dict(state)
    return clone


def memory_phase(model: Transformer, plan: Plan, device, console: Console) -> tuple[list[dict], Transformer]:
    """The options at each length; the starting weights wait in CPU memory, so each peak is one model's."""
    config = model.config
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    del model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    rows = []
    for length, options in plan.lengths.items():
        for name in options:
            checkpointing, offload = OPTIONS[name]
            trial = _fresh_copy(config, state, device)
            loader = PasskeyLoader(length, 1, device, seed=length)
            row = {"length": length, "option": name}
            t0 = time.perf_counter()
            try:
                result = _train(trial, plan.lr / 5, loader, 2, checkpointing, offload, device, warmup=2)
                last = result.records[-1]
                row |= {
                    "tokens_per_s": last.get("tokens_per_s"),
                    "peak_gib": round(last["memory_bytes"] / 2**30, 2) if "memory_bytes" in last else None,
                    "loss": round(last["loss"], 4),
                }
            except torch.OutOfMemoryError:
                row["oom"] = True
            row["seconds"] = round(time.perf_counter() - t0, 1)
            console.print(row)
            rows.append(row)
            if not row.get("oom"):  # training carries on from the model that took these steps
                state = {k: v.detach().to("cpu", copy=True) for k, v in trial.state_dict().items()}
            del trial
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows, _fresh_copy(config, state, device)


def needle_prompt(rng: np.random.Generator, length: int, depth: float, sentences: np.ndarray):
    """(prompt ids of `length` tokens, the passkey): `KEY_0 d1..d5` hidden at `depth`, asked with `KEY_0`."""
    code = passkey(rng)
    return haystack(rng, length, depth, KEYS[0], code, sentences).tolist(), code.tolist()


def needle_phase(model: Transformer, plan: Plan, device, console: Console) -> list[dict]:
    model = model.to(torch.bfloat16) if device.type == "cuda" else model
    longest = max(plan.needle_lengths) + PASSKEY_DIGITS + 1
    config = EngineConfig(
        max_num_seqs=1,
        max_num_batched_tokens=min(4096, longest // 2),  # long prompts prefill in chunks
        max_model_len=min(longest, model.config.max_seq_len),
        num_blocks=longest // 16 + 8,
        enable_prefix_caching=False,
        cuda_graphs=False,
    )
    engine = LLMEngine(model, None, config)
    sentences = filler_sentences()
    rng = np.random.default_rng(7)
    params = SamplingParams(max_tokens=PASSKEY_DIGITS, temperature=0.0)
    rows = []
    for length, depths in plan.needle_lengths.items():
        length = min(length, engine.max_model_len - PASSKEY_DIGITS - 1)
        for depth in depths:
            prompt, code = needle_prompt(rng, length, depth, sentences)
            t0 = time.perf_counter()
            (out,) = engine.generate([prompt], params)
            got = list(out.outputs[0].token_ids)
            row = {
                "length": length,
                "depth": depth,
                "passkey": code,
                "answer": got,
                "retrieved": got == code,
                "digits_right": int(sum(a == b for a, b in zip(got, code, strict=False))),
                "seconds": round(time.perf_counter() - t0, 1),
            }
            console.print(row)
            rows.append(row)
    return rows


def _timed(fn, repeats: int, device) -> float:
    """Median seconds of `fn()` after one warm-up call (which also compiles)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def document_phase(plan: Plan, device, console: Console) -> dict:
    """Document-masked attention, forward + backward at the preset's head layout over documents of random lengths:
    FlexAttention (CUDA) against a dense SDPA mask (same results), and plain causal attention (cuDNN) as the cost
    of no mask at all."""
    config = get_config(plan.preset["preset"])
    seq, heads, kv_heads, dim = plan.document_len, config.n_heads, config.kv_heads, config.head_size
    rng = np.random.default_rng(0)
    lengths = []
    while sum(lengths) < seq:
        lengths.append(int(rng.integers(seq // 64, seq // 4)))
    documents = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])[:seq][None].to(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    gen = torch.Generator(device).manual_seed(0)
    q, k, v = (
        torch.randn(1, h, seq, dim, device=device, dtype=dtype, generator=gen) for h in (heads, kv_heads, kv_heads)
    )
    scale = dim**-0.5
    ways = {"dense mask": DocumentMask(documents, use_flex=False)}
    if device.type == "cuda":
        ways["flex"] = DocumentMask(documents, use_flex=True)
    positions = torch.arange(seq, device=device)
    ways["causal, no mask"] = lambda q, k, v, scale: attention(q, k, v, scale=scale, q_positions=positions)

    def step(way):
        inputs = [t.detach().requires_grad_() for t in (q, k, v)]
        out = way(*inputs, scale=scale)
        out.float().square().mean().backward()
        return out.detach(), [t.grad for t in inputs]

    row: dict = {"seq": seq, "documents": len(lengths)}
    for name, way in ways.items():
        row[f"{name} ms"] = round(1000 * _timed(lambda way=way: step(way), 3, device), 2)
    if "flex" in ways:
        (flex_out, flex_grads), (dense_out, dense_grads) = step(ways["flex"]), step(ways["dense mask"])
        row["flex vs dense max diff"] = max(
            (a.float() - b.float()).abs().max().item()
            for a, b in zip([flex_out, *flex_grads], [dense_out, *dense_grads], strict=True)
        )
        row["flex / causal time"] = round(row["flex ms"] / row["causal, no mask ms"], 3)
    console.print(row)
    return row


def run(plan: Plan, device: torch.device, console: Console, json_path: str | None = None) -> dict:
    """All phases; the report as a JSON-ready dict, also written to `json_path` after each phase (so a run cut
    short keeps what it measured)."""
    spec = dict(plan.preset)
    torch.manual_seed(0)
    with torch.device(device):  # initialised where it trains: a 1B model's init on the CPU takes seconds
        model = Transformer(get_config(spec.pop("preset"), **spec))
    t0 = time.perf_counter()
    report: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "model": plan.preset,
        "params": num_params(model.config),
        "max_seq_len": model.config.max_seq_len,
        "rope_scaling": model.config.rope_scaling,
    }
    console.print(f"[bold]model[/]: {report['params'] / 1e9:.2f}B parameters on {report['device']}")

    def save() -> None:
        if json_path:
            with open(json_path, "w") as f:
                json.dump(report, f, indent=2)

    report["documents"] = document_phase(plan, device, console)
    save()
    report["retrieval"] = retrieval_phase(model, plan, device, console)
    save()
    report["memory"], model = memory_phase(model, plan, device, console)
    save()
    report["needle"] = needle_phase(model, plan, device, console)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    by_length: dict[int, list[bool]] = {}
    for row in report["needle"]:
        by_length.setdefault(row["length"], []).append(row["retrieved"])
    report["retrieved_by_length"] = {str(k): f"{sum(v)}/{len(v)}" for k, v in by_length.items()}
    console.print(f"[bold]needle retrieved[/]: {report['retrieved_by_length']}  ({report['seconds']} s in all)")
    save()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a tiny model at short lengths (CPU smoke test)")
    parser.add_argument("--retrieval-steps", type=int, help="steps of the first (short) retrieval stage")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    plan = TINY if args.tiny else GPU
    if args.retrieval_steps is not None:
        (length, batch, _), *rest = plan.curriculum
        plan = dataclasses.replace(plan, curriculum=((length, batch, args.retrieval_steps), *rest))
    run(plan, torch.device(args.device), Console(), args.json)


if __name__ == "__main__":
    main()
