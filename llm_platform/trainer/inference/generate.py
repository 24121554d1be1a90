"""Autoregressive generation for one prompt: prefill once, then decode token by token through a static KV cache."""

from __future__ import annotations

import torch

from .kv_cache import StaticKVCache
from .sampling import sample_next


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    prompt_ids: list[int],
    max_new_tokens: int,
    temperature: float = 0.8,
    top_k: int | None = 50,
    top_p: float | None = None,
    eos_id: int | None = None,
    seed: int = 0,
    max_context: int | None = None,
) -> list[int]:
    """New token ids continuing `prompt_ids`, stopping at `eos_id`, after `max_new_tokens`, or when the context
    (`max_context`, default the model's `max_seq_len`) is full. The prompt keeps its last tokens if it is too long."""
    param = next(model.parameters())
    limit = max_context or model.config.max_seq_len
    prompt = prompt_ids[-max(1, limit - 1) :]
    budget = min(max_new_tokens, limit - len(prompt))
    generator = torch.Generator(device=param.device).manual_seed(seed)
    cache = StaticKVCache(model.config, 1, len(prompt) + budget, device=param.device, dtype=param.dtype)
    model.eval()
    logits = model(torch.tensor([prompt], device=param.device), cache=cache, start_pos=0)[:, -1, :]
    new: list[int] = []
    for position in range(len(prompt), len(prompt) + budget):
        token = sample_next(logits, temperature, top_k, top_p, generator)
        if eos_id is not None and token.item() == eos_id:
            break
        new.append(token.item())
        logits = model(token.view(1, 1), cache=cache, start_pos=position)[:, -1, :]
    return new
