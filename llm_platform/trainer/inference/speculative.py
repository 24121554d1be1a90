"""Speculative decoding (Leviathan et al. 2023; Chen et al. 2023): a small draft model proposes k tokens, the target
scores all of them in one forward, and rejection sampling keeps the output distribution exactly the target's.

    result = speculative_generate(target, draft, prompt_ids, max_new_tokens=256, k=4, temperature=0.8, seed=0)
    result.tokens, result.acceptance_rate, result.tokens_per_round

Why it is lossless: draft token d ~ q is accepted with probability min(1, p(d) / q(d)); on rejection the token is
drawn from norm(max(0, p - q)). The chance of emitting x is then min(p, q)(x) + (1 - sum min(p, q)) * (p - q)+(x) /
sum (p - q)+ = p(x), because sum (p - q)+ = 1 - sum min(p, q). When all k are accepted the target's distribution at
the next position is already computed and gives a bonus token. Greedy decoding is the same rule with one-hot
distributions (accept while the draft agrees with the target's argmax, else take the target's argmax), so its output
equals the target's greedy output token for token.

Both models run batch 1 over a cache that can roll back rejected positions: ``CachedModel`` (the model's forward
over a ``StaticKVCache``, truncated on rollback) on any device, or ``FastDecoder`` (static shapes, CUDA graphs), whose
position-masked cache needs no truncation. One host sync per round (to learn how many tokens were accepted).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Protocol

import torch

from .kv_cache import StaticKVCache
from .sampling import filter_logits


class LogitsRunner(Protocol):
    """What speculative decoding needs of a model: float logits [T, V] for tokens [1, T] placed at start_pos, where
    start_pos may go back to any earlier position (everything from there on is forgotten)."""

    def logits(self, tokens: torch.Tensor, start_pos: int) -> torch.Tensor: ...

    def prefill(self, tokens: torch.Tensor) -> torch.Tensor: ...  # fills the cache from 0; last logits [1, V]


class CachedModel:
    """A ``Transformer`` over its own batch-1 ``StaticKVCache`` of ``max_len`` positions, as a ``LogitsRunner``.

    Sliding-window layers get full-length cache layers (attention still applies their window by position): a ring
    buffer overwrites positions that a rollback would need again."""

    def __init__(self, model: torch.nn.Module, max_len: int) -> None:
        param = next(model.parameters())
        self.model, self.device = model.eval(), param.device
        layout = dataclasses.replace(model.config, sliding_window=None, sliding_window_layers=None)
        self.cache = StaticKVCache(layout, 1, max_len, device=param.device, dtype=param.dtype)
        self.max_len = max_len

    @torch.no_grad()
    def logits(self, tokens: torch.Tensor, start_pos: int) -> torch.Tensor:
        if start_pos < self.cache.seen:
            self.cache.truncate(start_pos)
        return self.model(tokens.to(self.device), cache=self.cache, start_pos=start_pos)[0].float()

    def prefill(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.logits(tokens, 0)[-1:]


@dataclass
class SpeculativeResult:
    tokens: list[int]
    proposed: int = 0  # draft tokens proposed
    accepted: int = 0  # of which the target accepted
    rounds: int = 0  # target forwards after the prompt
    accepted_per_round: list[int] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def tokens_per_round(self) -> float:
        """New tokens per target forward (1 without speculation; at most k + 1)."""
        return len(self.tokens) / self.rounds if self.rounds else 0.0


def token_distribution(
    logits: torch.Tensor, temperature: float, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """The distribution a token is sampled from, rows of [N, V] float32: softmax of the temperature-scaled,
    top-k/top-p-filtered logits, or the one-hot argmax when temperature is 0 (greedy)."""
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    return filter_logits(logits.float() / temperature, top_k or None, top_p).softmax(-1)


def _sample(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row, drawn as argmax(p / E), E ~ Exp(1) (no host sync; exact for one-hot rows too)."""
    noise = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return (probs / noise).argmax(-1)


def verify(
    draft_tokens: torch.Tensor,
    draft_probs: torch.Tensor,
    target_probs: torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The rejection step: (number of leading draft tokens accepted, the token that follows them), both 0-d tensors
    on the device.

    draft_tokens [k] were sampled from draft_probs [k, V]; target_probs [k + 1, V] are the target's distributions at
    the same k positions plus the one after them (the bonus position). k may be 0 (a plain target step)."""
    k = draft_tokens.shape[0]
    rows = torch.arange(k, device=draft_tokens.device)
    p = target_probs[rows, draft_tokens]
    q = draft_probs[rows, draft_tokens]
    uniform = torch.rand(k, generator=generator, device=draft_tokens.device)
    accept = uniform * q < p  # u < p / q without dividing; q > 0 since d was drawn from q
    accepted = accept.long().cumprod(0).sum()
    # where the first rejection happens, sample the residual max(0, p - q); past the last draft token, p itself
    residual = torch.cat(((target_probs[:k] - draft_probs).clamp(min=0), target_probs[k:]))
    row = residual[accepted]
    mass = row.sum()
    row = torch.where(mass > 0, row / mass.clamp(min=1e-30), target_probs[accepted])  # p == q: never rejected
    return accepted, _sample(row[None], generator)[0]


def _runner(model, max_len: int) -> LogitsRunner:
    if hasattr(model, "logits") and hasattr(model, "prefill"):
        if getattr(model, "max_len", max_len) < max_len:
            raise ValueError(f"the decoder holds {model.max_len} positions; this request needs {max_len}")
        return model
    return CachedModel(model, max_len)


def _vocab(model) -> int:
    inner = getattr(model, "model", model)
    return inner.config.vocab_size


@torch.no_grad()
def speculative_generate(
    target,
    draft,
    prompt_ids: list[int],
    max_new_tokens: int,
    *,
    k: int = 4,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    seed: int = 0,
) -> SpeculativeResult:
    """New tokens after ``prompt_ids`` sampled from the target's distribution (temperature / top-k / top-p as in
    ``generate``), with ``k`` draft tokens proposed per round. target / draft: a ``Transformer`` (wrapped in a
    ``CachedModel``) or a ``LogitsRunner`` such as ``FastDecoder``; both must share the tokenizer's vocabulary."""
    if not prompt_ids:
        raise ValueError("prompt_ids is empty; give at least one token")
    if k < 0:
        raise ValueError(f"k (draft tokens per round) must be >= 0, got {k}")
    if _vocab(target) != _vocab(draft):
        raise ValueError(
            f"draft vocabulary ({_vocab(draft)}) differs from the target's ({_vocab(target)}); "
            "the draft must use the same tokenizer"
        )
    # the last round may run up to k positions past the budget; its extra tokens are dropped
    capacity = len(prompt_ids) + max_new_tokens + k + 1
    target_run, draft_run = _runner(target, capacity), _runner(draft, capacity)
    device = next(getattr(target, "model", target).parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    seq = list(prompt_ids)
    result = SpeculativeResult(tokens=[])
    if len(seq) > 1:
        context = torch.tensor([seq[:-1]], device=device)
        target_run.prefill(context)
        draft_run.prefill(context)
    draft_len = len(seq) - 1  # positions the draft's cache holds; the target's always holds len(seq) - 1
    while len(seq) - len(prompt_ids) < max_new_tokens:
        end = len(seq)
        proposals, proposal_probs = [], []
        pos = draft_len
        if k:
            # the draft is behind by one token, or two after a round that accepted everything; feeding them one at a
            # time keeps the draft at two token counts (1 and the prompt), i.e. two captured graphs
            for token_id in seq[draft_len:-1]:
                draft_run.logits(torch.tensor([[token_id]], device=device), pos)
                pos += 1
        feed = torch.tensor([[seq[-1]]], device=device)
        for _ in range(k):
            q = token_distribution(draft_run.logits(feed, pos)[-1:], temperature, top_k, top_p)
            token = _sample(q, generator)
            proposals.append(token)
            proposal_probs.append(q[0])
            pos += feed.shape[1]
            feed = token.view(1, 1)
        draft_len = pos
        proposed = torch.cat(proposals) if k else torch.zeros(0, dtype=torch.long, device=device)
        block = torch.cat((torch.tensor([seq[-1]], device=device), proposed)).view(1, -1)
        p = token_distribution(target_run.logits(block, end - 1), temperature, top_k, top_p)
        q_all = torch.stack(proposal_probs) if k else p[:0]
        accepted, nxt = verify(proposed, q_all, p, generator)
        accepted = int(accepted)  # the round's one host sync
        new = proposed[:accepted].tolist() + [int(nxt)]
        seq += new
        draft_len = min(draft_len, end + accepted)
        result.proposed += k
        result.accepted += accepted
        result.rounds += 1
        result.accepted_per_round.append(accepted)
        if eos_id is not None and eos_id in new:
            seq = seq[: len(seq) - len(new) + new.index(eos_id)]
            break
    result.tokens = seq[len(prompt_ids) : len(prompt_ids) + max_new_tokens]
    return result
