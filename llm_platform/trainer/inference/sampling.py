"""Choosing the next token from logits: penalties, temperature, top-k, top-p, min-p, greedy; pure tensor functions.

``process_logits`` applies a batch's per-row settings in transformers' order (repetition penalty, n-gram ban, then
temperature, top-k, top-p, min-p), each step computed as transformers computes it so that greedy and filtered
outputs match its ``generate`` token for token. Presence/frequency penalties (OpenAI's, which transformers lacks) sit
after the repetition penalty, as vLLM applies them. ``sample`` draws each seeded row from its own generator, so a
seeded request's tokens do not depend on which other requests share its batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

NEG_INF = float("-inf")


@dataclass
class BatchSampling:
    """Per-row settings as [B] tensors (on the logits' device), plus each row's token history.

    history: prompt + output ids per row (repetition penalty and n-gram ban read them); output_counts: [B, V]
    occurrences of each token in the row's output so far (presence/frequency penalties read them), or None.
    """

    temperature: torch.Tensor
    top_k: torch.Tensor
    top_p: torch.Tensor
    min_p: torch.Tensor
    repetition_penalty: torch.Tensor
    presence_penalty: torch.Tensor
    frequency_penalty: torch.Tensor
    no_repeat_ngram_size: list[int]
    history: list[Sequence[int]]
    output_counts: torch.Tensor | None = None


def seen_mask(history: list[Sequence[int]], vocab_size: int, device: torch.device) -> torch.Tensor:
    """[B, V] bool: True where the row's history holds the token."""
    width = max((len(h) for h in history), default=0)
    ids = torch.full((len(history), max(width, 1)), vocab_size, dtype=torch.long)  # padding marks a spare column
    for row, h in enumerate(history):
        ids[row, : len(h)] = torch.as_tensor(list(h), dtype=torch.long)
    mask = torch.zeros(len(history), vocab_size + 1, dtype=torch.bool, device=device)
    return mask.scatter_(1, ids.to(device), True)[:, :vocab_size]


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """transformers' rule: a seen token's logit is divided by the penalty when positive, multiplied when negative."""
    p = penalty[:, None].to(logits.dtype)
    return torch.where(seen, torch.where(logits < 0, logits * p, logits / p), logits)


def apply_presence_frequency(
    logits: torch.Tensor, counts: torch.Tensor, presence: torch.Tensor, frequency: torch.Tensor
) -> torch.Tensor:
    """OpenAI's rule: logit - presence * [count > 0] - frequency * count, counts over the output tokens only."""
    counts = counts.to(logits.dtype)
    return logits - presence[:, None] * (counts > 0).to(logits.dtype) - frequency[:, None] * counts


def banned_ngram_tokens(history: Sequence[int], size: int) -> list[int]:
    """Tokens that would complete an n-gram already in ``history`` (transformers' no_repeat_ngram_size)."""
    if size <= 0 or len(history) + 1 < size:
        return []
    tail = tuple(history[len(history) - size + 1 :]) if size > 1 else ()
    return [history[i + size - 1] for i in range(len(history) - size + 1) if tuple(history[i : i + size - 1]) == tail]


def apply_top_k(logits: torch.Tensor, top_k: torch.Tensor) -> torch.Tensor:
    """Keeps each row's k highest logits (k = 0: all), ties with the k-th included, as transformers does."""
    vocab = logits.shape[-1]
    k = torch.where(top_k > 0, top_k.clamp(max=vocab), torch.full_like(top_k, vocab))
    sorted_desc = logits.sort(dim=-1, descending=True).values
    kth = sorted_desc.gather(1, (k - 1)[:, None])
    return logits.masked_fill(logits < kth, NEG_INF)


def apply_top_p(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Nucleus filter computed as transformers computes it: ascending sort, drop tokens whose cumulative probability
    stays <= 1 - top_p, always keep the top token. Rows with top_p = 1 are untouched."""
    sorted_logits, order = torch.sort(logits, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop = cumulative <= (1 - top_p[:, None].to(cumulative.dtype))
    drop[:, -1] = False
    drop &= (top_p < 1)[:, None]
    return logits.masked_fill(drop.scatter(1, order, drop), NEG_INF)


def apply_min_p(logits: torch.Tensor, min_p: torch.Tensor) -> torch.Tensor:
    """Drops tokens less likely than min_p x the top token's probability (the top token always stays)."""
    probs = logits.softmax(dim=-1)
    drop = probs < min_p[:, None].to(probs.dtype) * probs.amax(dim=-1, keepdim=True)
    drop.scatter_(1, probs.argmax(dim=-1, keepdim=True), False)
    return logits.masked_fill(drop, NEG_INF)


def process_logits(logits: torch.Tensor, s: BatchSampling) -> torch.Tensor:
    """Penalties and filters for a batch of last-position logits [B, V] (float32); greedy rows (temperature 0) get
    the penalties only, as transformers' greedy search does."""
    logits = logits.float()
    if bool((s.repetition_penalty != 1).any()):
        logits = apply_repetition_penalty(
            logits, seen_mask(s.history, logits.shape[-1], logits.device), s.repetition_penalty
        )
    if s.output_counts is not None and bool(((s.presence_penalty != 0) | (s.frequency_penalty != 0)).any()):
        logits = apply_presence_frequency(logits, s.output_counts, s.presence_penalty, s.frequency_penalty)
    for row, size in enumerate(s.no_repeat_ngram_size):
        banned = banned_ngram_tokens(s.history[row], size)
        if banned:
            logits[row, banned] = NEG_INF
    sampled = s.temperature > 0
    if not bool(sampled.any()):
        return logits
    warped = logits / torch.where(sampled, s.temperature, torch.ones_like(s.temperature))[:, None]
    if bool((s.top_k > 0).any()):
        warped = apply_top_k(warped, s.top_k)
    if bool((s.top_p < 1).any()):
        warped = apply_top_p(warped, s.top_p)
    if bool((s.min_p > 0).any()):
        warped = apply_min_p(warped, s.min_p)
    return torch.where(sampled[:, None], warped, logits)


def sample(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    generators: list[torch.Generator | None],
    default: torch.Generator | None = None,
) -> torch.Tensor:
    """Token ids [B] from processed logits: argmax where temperature is 0, else one draw from softmax(logits) with
    the row's own generator (or ``default`` for rows without one)."""
    tokens = logits.argmax(dim=-1)
    sampled = (temperature > 0).tolist()
    if not any(sampled):
        return tokens
    probs = logits.softmax(dim=-1)
    shared = [row for row, on in enumerate(sampled) if on and generators[row] is None]
    if shared:
        tokens[shared] = torch.multinomial(probs[shared], 1, generator=default).squeeze(-1)
    for row, on in enumerate(sampled):
        if on and generators[row] is not None:
            tokens[row] = torch.multinomial(probs[row], 1, generator=generators[row]).squeeze(-1)
    return tokens


def top_logprobs(logits: torch.Tensor, chosen: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(chosen token's logprob [B], top-k logprobs [B, k], their ids [B, k]) of the model's raw distribution."""
    logprobs = logits.float().log_softmax(dim=-1)
    top = logprobs.topk(k, dim=-1) if k > 0 else (logprobs[:, :0], chosen[:, None][:, :0])
    return logprobs.gather(1, chosen[:, None]).squeeze(1), top[0], top[1]


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Logits with everything outside the top-k and outside the smallest set of mass >= top_p set to -inf."""
    rows = logits.shape[0] if logits.dim() > 1 else 1
    flat = logits.reshape(rows, -1)
    if top_k is not None and top_k < flat.size(-1):
        flat = apply_top_k(flat, torch.full((rows,), top_k, dtype=torch.long, device=flat.device))
    if top_p is not None and top_p < 1.0:
        flat = apply_top_p(flat, torch.full((rows,), top_p, device=flat.device))
    return flat.reshape(logits.shape)


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Next token ids (B,) from last-position logits (B, V); temperature 0 means greedy."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = filter_logits(logits.float() / temperature, top_k, top_p).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
