"""Perplexity on a token array: the mean next-token negative log-likelihood over non-overlapping windows, with the
token accuracy (argmax = next token) of the same positions."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import token_accuracy


@torch.no_grad()
def perplexity(
    model: torch.nn.Module,
    tokens: np.ndarray,
    seq_len: int,
    batch_size: int = 8,
    max_batches: int | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Each window of `seq_len + 1` tokens scores its last `seq_len` tokens; every token is scored at most once (all
    of the split unless `max_batches` stops early). The result states the context length the numbers hold for."""
    window = seq_len + 1
    n_windows = (len(tokens) - 1) // seq_len
    if n_windows == 0:
        raise ValueError(f"{len(tokens)} tokens are too few for one window of {window}; lower `seq_len`")
    starts = np.arange(n_windows) * seq_len
    total_nll, total_tokens, total_correct = 0.0, 0, 0
    model.eval()
    for b, first in enumerate(range(0, n_windows, batch_size)):
        if max_batches is not None and b >= max_batches:
            break
        batch = np.stack([tokens[s : s + window] for s in starts[first : first + batch_size]]).astype(np.int64)
        ids = torch.from_numpy(batch).to(device)
        logits = model(ids[:, :-1]).float()
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1), reduction="sum")
        total_nll += nll.item()
        total_tokens += ids[:, 1:].numel()
        total_correct += token_accuracy(logits, ids[:, 1:])[0]
    loss = total_nll / total_tokens
    return {
        "loss": loss,
        "perplexity": math.exp(loss),
        "token_accuracy": total_correct / total_tokens,
        "tokens": total_tokens,
        "seq_len": seq_len,
    }
