"""Generation that stops at stop strings, for benchmarks that grade free text (GSM8K answers, BBH, ...).

The decode loop runs through our static KV cache and checks the text generated so far after every token, so it stops
as soon as a stop string appears instead of running to the token limit; the text returned ends before the first stop
string, as lm-eval expects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from llm_platform.trainer.inference.kv_cache import StaticKVCache
from llm_platform.trainer.inference.sampling import sample_next
from llm_platform.trainer.tokenizer import Tokenizer


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


@torch.no_grad()
def generate_until(model: torch.nn.Module, tokenizer: Tokenizer, prompt_ids: Sequence[int], decoding: Decoding) -> str:
    """Text continuing `prompt_ids`, ending before the first stop string, at the end-of-sequence token, or after
    `max_new_tokens` tokens (fewer when the model's context fills up)."""
    if not prompt_ids:
        raise ValueError("generation needs at least one prompt token")
    device = next(model.parameters()).device
    limit = model.config.max_seq_len
    prompt = list(prompt_ids)[-max(1, limit - 1) :]
    budget = min(decoding.max_new_tokens, limit - len(prompt))
    generator = torch.Generator(device=device).manual_seed(decoding.seed)
    dtype = next(model.parameters()).dtype
    cache = StaticKVCache(model.config, 1, len(prompt) + budget, device=device, dtype=dtype)
    model.eval()
    logits = model(torch.tensor([prompt], device=device), cache=cache, start_pos=0)[:, -1, :]
    new: list[int] = []
    temperature = 0.0 if decoding.greedy else decoding.temperature
    for position in range(len(prompt), len(prompt) + budget):
        token = sample_next(logits, temperature, decoding.top_k, decoding.top_p, generator).item()
        if token == tokenizer.eos_id:
            break
        new.append(token)
        if cut_at_stop(tokenizer.decode(new, skip_special=True), decoding.stops)[1]:
            break
        logits = model(torch.tensor([[token]], device=device), cache=cache, start_pos=position)[:, -1, :]
    return cut_at_stop(tokenizer.decode(new, skip_special=True), decoding.stops)[0]
