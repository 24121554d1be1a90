"""ALiBi (Press et al., 2022): a per-head linear penalty on query-key distance instead of position embeddings."""

from __future__ import annotations

import math

import torch


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Head slopes: the geometric sequence 2^(-8/n), 2^(-16/n), ... for n a power of two.

    For other head counts the paper takes the slopes of the nearest lower power of two and fills the rest with every
    other slope of the next power of two.
    """

    def geometric(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    lower = 2 ** math.floor(math.log2(n_heads))
    slopes = geometric(lower)
    if lower < n_heads:
        slopes += geometric(2 * lower)[0::2][: n_heads - lower]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(slopes: torch.Tensor, q_positions: torch.Tensor, k_positions: torch.Tensor) -> torch.Tensor:
    """Additive bias of shape [heads, Tq, Tk] (or [B, heads, Tq, Tk] for per-row positions [B, T]):
    slope x (key position - query position), <= 0 for past keys."""
    distance = (k_positions.unsqueeze(-2) - q_positions.unsqueeze(-1)).to(slopes.dtype).unsqueeze(-3)
    return slopes[:, None, None] * distance
