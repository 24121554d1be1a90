"""The attention kernel shared by GQA and MLA: SDPA with the fastest backend, or the flash_attn package.

Masks are described by positions, not tensors, so that the common case (causal, no window, no bias) reaches the
fused kernels with ``is_causal=True`` and no T x T mask is ever built.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

import torch
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

# Fastest first. On an H200, cuDNN attention measured ~1.9x the flash backend (bench/attention.py); backends that
# cannot take the call (dtype, mask, head size) are skipped by PyTorch.
_CUDA_PRIORITY = [
    SDPBackend.CUDNN_ATTENTION,
    SDPBackend.FLASH_ATTENTION,
    SDPBackend.EFFICIENT_ATTENTION,
    SDPBackend.MATH,
]
_SINGLE_BACKEND = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}


@functools.cache
def flash_attn_func() -> Callable | None:
    """``flash_attn.flash_attn_func`` if the package is installed, else None (imported on first use only)."""
    try:
        return importlib.import_module("flash_attn").flash_attn_func
    except ImportError:
        return None


def require_flash_attn() -> Callable:
    fn = flash_attn_func()
    if fn is None:
        raise ImportError(
            "attn_impl='flash_attn' needs the flash-attn package: `pip install flash-attn --no-build-isolation` "
            "(the 'gpu' extra), or set attn_impl='auto' to use PyTorch SDPA"
        )
    return fn


def position_mask(
    q_positions: torch.Tensor,
    k_positions: torch.Tensor,
    window: int | None,
) -> torch.Tensor:
    """Boolean [Tq, Tk] mask (True = attend): causal, inside the window, and only filled cache slots (position >= 0)."""
    q, k = q_positions[:, None], k_positions[None, :]
    allowed = (k <= q) & (k >= 0)
    if window is not None:
        allowed &= q - k < window
    return allowed


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float,
    q_positions: torch.Tensor,
    k_positions: torch.Tensor | None,
    window: int | None,
    bias: torch.Tensor | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """Softmax attention over [B, H, Tq, D] queries and [B, H_kv, Tk, D] keys/values (H a multiple of H_kv).

    k_positions None means keys are the queries themselves (training, prefill without cache): plain causal.
    bias: an additive [H, Tq, Tk] float bias (ALiBi), applied on top of the mask.
    """
    plain_causal = k_positions is None and window is None and bias is None
    if impl in ("auto", "flash_attn") and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        fn = require_flash_attn() if impl == "flash_attn" else flash_attn_func()
        if fn is not None and bias is None and k_positions is None and q.shape[-1] == v.shape[-1]:
            left = -1 if window is None else window - 1
            out = fn(
                q.transpose(1, 2),
                k.transpose(1, 2),
                v.transpose(1, 2),
                softmax_scale=scale,
                causal=True,
                window_size=(left, 0),
            )
            return out.transpose(1, 2)
    elif impl == "flash_attn":
        raise ValueError("attn_impl='flash_attn' needs CUDA tensors in fp16/bf16; use attn_impl='auto' here")

    mask = None
    if not plain_causal:
        keys = q_positions if k_positions is None else k_positions
        allowed = position_mask(q_positions, keys, window)
        mask = allowed if bias is None else bias.to(q.dtype).masked_fill(~allowed, float("-inf"))

    if not q.is_cuda:
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=plain_causal, scale=scale, enable_gqa=k.shape[1] != q.shape[1]
        )
    # Not every CUDA backend takes grouped heads; repeating K/V keeps cuDNN and the masked kernels in play.
    if k.shape[1] != q.shape[1]:
        groups = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    backends = [_SINGLE_BACKEND[impl]] if impl in _SINGLE_BACKEND else _CUDA_PRIORITY
    with sdpa_kernel(backends, set_priority=True):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=plain_causal, scale=scale)
