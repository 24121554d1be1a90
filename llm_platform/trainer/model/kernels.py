"""The attention kernel shared by GQA and MLA: SDPA with the fastest backend, or the flash_attn package.

Masks are described by positions, not tensors, so that the common case (causal, no window, no bias) reaches the
fused kernels with ``is_causal=True`` and builds no T x T mask.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

import torch
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.bias import CausalBias, causal_lower_right

# Fastest first, at every head dim measured: on an H200 (torch 2.11), causal fwd+bwd at 32K tokens ran at 551 TFLOP/s
# with cuDNN against 326 with the flash backend (bench/RESULTS.md); at 2048 tokens, bf16, grouped K/V
# (`bench/kernels.py`, 2026-12-03; issue 16):
#   head dim 64, 16 x 12 heads (4 KV):  cuDNN 313, flash 193, memory-efficient 97
#   head dim 64,  8 x 32 heads (4 KV):  cuDNN 321, flash 203, memory-efficient 99
#   head dim 128, 8 x 16 heads (4 KV):  cuDNN 405, flash 217, memory-efficient 120
# Backends that cannot take a call (dtype, mask, head size) are skipped.
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


def resolve_flash_attn(impl: str) -> Callable | None:
    """The flash_attn function an attention layer should use, looked up once when the layer is built (not inside
    forward, where an import would break a torch.compile graph)."""
    if impl == "flash_attn":
        return require_flash_attn()
    return flash_attn_func() if impl == "auto" else None


def position_mask(
    q_positions: torch.Tensor,
    k_positions: torch.Tensor,
    window: int | None,
) -> torch.Tensor:
    """Boolean [Tq, Tk] mask (True = attend): causal, inside the window, and only filled cache slots (position >= 0).
    Per-row positions [B, Tq] and [B, Tk] give a [B, Tq, Tk] mask."""
    q, k = q_positions.unsqueeze(-1), k_positions.unsqueeze(-2)
    allowed = (k <= q) & (k >= 0)
    if window is not None:
        allowed &= q - k < window
    return allowed


def repeat_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, H_kv, T, D] -> [B, heads, T, D], each KV head repeated for its query group (expand + reshape: unlike
    ``repeat_interleave`` with an int, no device-to-host sync)."""
    batch, kv_heads, seq, dim = x.shape
    return x[:, :, None].expand(batch, kv_heads, heads // kv_heads, seq, dim).reshape(batch, heads, seq, dim)


def prefix_positions(q_positions: torch.Tensor, k_len: int) -> torch.Tensor:
    """Positions of ``k_len`` keys that end at the last query (no host sync: computed on the device)."""
    return torch.arange(k_len, device=q_positions.device) + (q_positions[-1] + 1 - k_len)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float,
    q_positions: torch.Tensor,
    k_positions: torch.Tensor | None = None,
    window: int | None = None,
    bias: torch.Tensor | None = None,
    impl: str = "auto",
    flash_fn: Callable | None = None,
) -> torch.Tensor:
    """Softmax attention over [B, H, Tq, D] queries and [B, H_kv, Tk, D] keys/values (H a multiple of H_kv).

    k_positions: absolute positions of the keys; None means the keys are the Tk positions ending at the last query
        (training, prefill, and a full KV cache), which keeps the unmasked fused kernels in play. Per-row positions
        (q_positions [B, Tq] with k_positions [B, Tk], -1 for empty slots) mask each row on its own.
    window: sliding window (a query sees itself and window - 1 earlier positions); None = full causal.
    bias: an additive [H, Tq, Tk] float bias (ALiBi), applied on top of the mask.
    impl / flash_fn: the layer's ``attn_impl`` and what ``resolve_flash_attn`` gave for it.
    """
    q_len, k_len = q.shape[2], k.shape[2]
    if window is not None and k_positions is None and k_len <= window:
        window = None  # every key is within the window of every query: plain causal attention, fused kernels
    if flash_fn is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        if bias is None and k_positions is None and q.shape[-1] == v.shape[-1]:
            left = -1 if window is None else window - 1  # flash_attn aligns causal masks bottom-right, as we need
            out = flash_fn(
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

    if k_positions is None and window is None and bias is None:
        if q_len == k_len:
            return _sdpa(q, k, v, None, is_causal=True, scale=scale, impl=impl)
        return _sdpa(q, k, v, causal_lower_right(q_len, k_len), is_causal=False, scale=scale, impl=impl)
    if k_positions is None:
        k_positions = prefix_positions(q_positions, k_len)
    allowed = position_mask(q_positions, k_positions, window)
    per_row = allowed.dim() == 3
    if per_row:
        allowed = allowed.unsqueeze(1)  # [B, 1, Tq, Tk]: one mask for all heads of a row
    mask = allowed if bias is None else bias.to(q.dtype).masked_fill(~allowed, float("-inf"))
    if per_row and k.shape[1] != q.shape[1]:
        return _grouped_as_queries(q, k, v, mask, scale=scale, impl=impl)
    return _sdpa(q, k, v, mask, is_causal=False, scale=scale, impl=impl)


def _grouped_as_queries(q, k, v, mask, *, scale: float, impl: str) -> torch.Tensor:
    """GQA under a per-row mask (the inference engine's batches): the query heads sharing a KV head become extra
    query rows of that head, so keys and values are read in place; masked fused kernels cannot group heads, and
    repeating K/V for them would copy the whole cache every layer."""
    batch, heads, q_len, dim = q.shape
    kv_heads, k_len = k.shape[1], k.shape[2]
    group = heads // kv_heads
    folded_q = q.reshape(batch, kv_heads, group * q_len, dim)  # query head h = kv * group + g, as repeat_heads
    if mask.shape[1] == 1:
        mask = mask.unsqueeze(2).expand(batch, 1, group, q_len, k_len).reshape(batch, 1, group * q_len, k_len)
    else:
        mask = mask.reshape(batch, kv_heads, group * q_len, k_len)
    out = _sdpa(folded_q, k, v, mask, is_causal=False, scale=scale, impl=impl)  # (B, H_kv, group * Tq, Dv)
    return out.reshape(batch, heads, q_len, v.shape[-1])


def _sdpa(q, k, v, mask, *, is_causal: bool, scale: float, impl: str) -> torch.Tensor:
    grouped = k.shape[1] != q.shape[1]
    if not q.is_cuda:
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale, enable_gqa=grouped
        )
    backends = [_SINGLE_BACKEND[impl]] if impl in _SINGLE_BACKEND else _CUDA_PRIORITY
    # The flash and cuDNN kernels read grouped K/V heads in place; a dense mask sends the call to the
    # memory-efficient kernel, which needs them repeated.
    if grouped and mask is not None and not isinstance(mask, CausalBias):
        k, v, grouped = repeat_heads(k, q.shape[1]), repeat_heads(v, q.shape[1]), False
    with sdpa_kernel(backends, set_priority=True):
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale, enable_gqa=grouped
        )
