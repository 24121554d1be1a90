"""Autoregressive generation with a model and a tokenizer (no cache: simple and exact; the engine does it fast)."""

from __future__ import annotations

import torch

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
    """New token ids continuing `prompt_ids`, stopping at `eos_id` or after `max_new_tokens`."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    new: list[int] = []
    model.eval()
    for _ in range(max_new_tokens):
        context = ids if max_context is None else ids[:, -max_context:]
        logits = model(context)[:, -1, :]
        token = sample_next(logits, temperature, top_k, top_p, generator)
        if eos_id is not None and token.item() == eos_id:
            break
        new.append(token.item())
        ids = torch.cat([ids, token.view(1, 1)], dim=1)
    return new
