"""Log-likelihood of continuations under a causal LM: the computation behind every multiple-choice benchmark.

A request is (context ids, continuation ids). The model reads context + continuation without its last token, cut on the
left to `max_length` tokens, and the continuation's log-probability is the sum over its tokens. Requests whose model
input is identical (the same question with one-token answers " A" .. " D") share one forward pass, and the LM head runs
only at the positions that are scored, so a large vocabulary never needs a [batch, length, vocab] tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Request = tuple[Sequence[int], Sequence[int]]


def model_input(context: Sequence[int], continuation: Sequence[int], max_length: int) -> tuple[int, ...]:
    """The tokens the model reads to score `continuation`: the last `max_length + 1` of both, less the final one."""
    if not context or not continuation:
        raise ValueError("a request needs at least one context token and one continuation token")
    if len(continuation) > max_length:
        raise ValueError(f"a continuation of {len(continuation)} tokens cannot be scored in {max_length} positions")
    return tuple((list(context) + list(continuation))[-(max_length + 1) : -1])


@torch.no_grad()
def score_continuations(
    model: torch.nn.Module, requests: Sequence[Request], max_length: int, batch_size: int = 8
) -> list[tuple[float, bool]]:
    """(log-probability of the continuation, whether greedy decoding would produce it) for each request, in order."""
    inputs = [model_input(context, continuation, max_length) for context, continuation in requests]
    by_input: dict[tuple[int, ...], list[int]] = {}
    for i, ids in enumerate(inputs):
        by_input.setdefault(ids, []).append(i)
    # longest first: a batch pads to its first row, and the memory peak shows at once rather than at the end
    unique = sorted(by_input, key=len, reverse=True)
    device = next(model.parameters()).device
    results: list[tuple[float, bool] | None] = [None] * len(requests)
    model.eval()
    for first in range(0, len(unique), batch_size):
        batch = unique[first : first + batch_size]
        ids = torch.zeros(len(batch), len(batch[0]), dtype=torch.long, device=device)
        for row, tokens in enumerate(batch):
            ids[row, : len(tokens)] = torch.tensor(tokens, device=device)
        hidden = model.hidden_states(ids)  # right padding: a causal model's earlier positions never see it
        for row, tokens in enumerate(batch):
            for i in by_input[tokens]:
                continuation = torch.tensor(requests[i][1], device=device)
                n = len(continuation)
                logprobs = model.lm_head(hidden[row, len(tokens) - n : len(tokens)]).float().log_softmax(-1)
                total = logprobs.gather(-1, continuation[:, None]).sum().item()
                results[i] = (total, bool((logprobs.argmax(-1) == continuation).all()))
    return results  # type: ignore[return-value]
