"""Generation that stops at stop strings, for benchmarks that grade free text (GSM8K answers, BBH, ...).

All prompts of a call run together through the inference engine (continuous batching over a paged KV cache), each
stopping as soon as a stop string appears instead of running to the token limit; the text returned ends before the
first stop string, as lm-eval expects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from llm_platform.trainer.inference import EngineConfig, LLMEngine, SamplingParams
from llm_platform.trainer.tokenizer import Tokenizer

BLOCK_SIZE = 16


@dataclass(frozen=True)
class Decoding:
    """How to pick tokens: greedy unless `do_sample` with a temperature above 0 (as transformers' `generate` reads
    the same keys)."""

    max_new_tokens: int
    stops: tuple[str, ...] = ()
    do_sample: bool = False
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature == 0


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """`text` up to the earliest occurrence of any stop string, and whether one occurred."""
    cuts = [index for stop in stops if stop and (index := text.find(stop)) >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def sampling_params(decoding: Decoding) -> SamplingParams:
    return SamplingParams(
        max_tokens=decoding.max_new_tokens,
        temperature=0.0 if decoding.greedy else decoding.temperature,
        top_k=decoding.top_k or 0,
        top_p=1.0 if decoding.top_p is None else decoding.top_p,
        stop=tuple(s for s in decoding.stops if s),
        seed=decoding.seed,
    )


@torch.no_grad()
def generate_batch(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    prompts: Sequence[Sequence[int]],
    decodings: Sequence[Decoding],
    max_batch: int = 64,
) -> list[str]:
    """Texts continuing each of `prompts` (see `generate_until`), generated together by one engine whose KV pool
    holds every request at once. A prompt keeps its last max_seq_len - 1 tokens."""
    if len(prompts) != len(decodings):
        raise ValueError(f"{len(prompts)} prompts but {len(decodings)} decoding settings")
    for i, ids in enumerate(prompts):
        if not ids:
            raise ValueError(f"prompts[{i}]: generation needs at least one prompt token")
    if not prompts:
        return []
    limit = model.config.max_seq_len
    cut = [list(ids)[-max(1, limit - 1) :] for ids in prompts]
    blocks = [
        math.ceil(min(limit, len(ids) + d.max_new_tokens) / BLOCK_SIZE) for ids, d in zip(cut, decodings, strict=True)
    ]
    batch = min(max_batch, len(prompts))
    config = EngineConfig(
        block_size=BLOCK_SIZE,
        num_blocks=sum(sorted(blocks, reverse=True)[:batch]),
        max_num_seqs=batch,
        enable_prefix_caching=False,
    )
    engine = LLMEngine(model, tokenizer, config)
    outs = engine.generate(cut, [sampling_params(d) for d in decodings])
    return [out.outputs[0].text for out in outs]


def generate_until(model: torch.nn.Module, tokenizer: Tokenizer, prompt_ids: Sequence[int], decoding: Decoding) -> str:
    """Text continuing `prompt_ids`, ending before the first stop string, at the end-of-sequence token, or after
    `max_new_tokens` tokens (fewer when the model's context fills up)."""
    if not prompt_ids:
        raise ValueError("generation needs at least one prompt token")
    return generate_batch(model, tokenizer, [prompt_ids], [decoding])[0]
