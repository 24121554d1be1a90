"""Grouped-query self-attention: MHA, GQA and MQA are the same module with ``num_kv_heads`` = H, H/g or 1."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .alibi import alibi_bias
from .config import ModelConfig
from .fused_ops import load, rotary
from .init import WeightInit, init_children
from .kernels import attention, prefix_positions, resolve_flash_attn
from .norm import RMSNorm


@dataclass
class AttentionContext:
    """What every attention layer needs besides its input, computed once per forward by the Transformer.

    positions: absolute positions of the current tokens, [T] (or [B, T] when rows sit at different positions).
    rope: (cos, sin) for those positions, or None without RoPE.
    alibi_slopes: per-head ALiBi slopes, or None.
    cache: a KV cache (``llm_platform.trainer.inference.kv_cache.StaticKVCache``, or the engine's per-step
        ``paged_cache.PagedBatch``, whose ``update`` returns per-row key positions) or None.
    start_pos: position of the first current token (0 without a cache).
    attend: instead of causal attention over the whole row, this function of (q, k, v, scale=, window=) (a
        ``document_mask.DocumentMask`` for packed documents, or ``context_parallel`` attention over a sequence
        sharded across processes); training forwards only, without a cache.
    """

    positions: torch.Tensor
    rope: tuple[torch.Tensor, torch.Tensor] | None
    alibi_slopes: torch.Tensor | None = None
    cache: Any = None
    start_pos: int = 0
    attend: Callable[..., torch.Tensor] | None = None


class Attention(nn.Module):
    """Projections, RoPE, attention, output projection. With ``fused_projections`` the queries, keys and values come
    from one ``qkv_proj`` (rows: H query heads, then H_kv key heads, then H_kv value heads), one GEMM instead of three.
    """

    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.kv_heads, config.head_size
        self.window = config.window_for_layer(layer)
        self.impl = config.attn_impl
        self.flash_fn = resolve_flash_attn(config.attn_impl)
        self.kernels, self.fused = config.kernels, config.fused_projections
        load(config.kernels)
        q_out, kv_out = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        if self.fused:
            self.qkv_proj = nn.Linear(config.dim, q_out + 2 * kv_out, bias=config.qkv_bias)
        else:
            self.q_proj = nn.Linear(config.dim, q_out, bias=config.qkv_bias)
            self.k_proj = nn.Linear(config.dim, kv_out, bias=config.qkv_bias)
            self.v_proj = nn.Linear(config.dim, kv_out, bias=config.qkv_bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, config.dim, bias=config.attn_out_bias)
        self.q_norm = RMSNorm(self.head_dim, config.norm_eps) if config.qk_norm else None
        self.k_norm = RMSNorm(self.head_dim, config.norm_eps) if config.qk_norm else None

    def forward(self, x: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        batch, seq, _ = x.shape
        q, k, v = self._project(x)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if ctx.rope is not None:
            q, k = rotary(q, k, *ctx.rope, self.kernels)

        if ctx.attend is not None:
            out = ctx.attend(q, k, v, scale=self.head_dim**-0.5, window=self.window)
            return self.o_proj(out.transpose(1, 2).reshape(batch, seq, -1))
        k_positions = None
        if ctx.cache is not None:
            k, v, k_positions = ctx.cache.update(self.layer, k, v, ctx.start_pos)
        bias = None
        if ctx.alibi_slopes is not None:
            keys = prefix_positions(ctx.positions, k.shape[2]) if k_positions is None else k_positions
            bias = alibi_bias(ctx.alibi_slopes, ctx.positions, keys)
        out = attention(
            q,
            k,
            v,
            scale=self.head_dim**-0.5,
            q_positions=ctx.positions,
            k_positions=k_positions,
            window=self.window,
            bias=bias,
            impl=self.impl,
            flash_fn=self.flash_fn,
        )
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, -1))

    def init_weights(self, init: WeightInit) -> None:
        """Projections Normal(0, std) with zero biases, o_proj (into the residual stream) the residual std, q/k norms
        unit gains."""
        init_children(self, init, residual=self.o_proj)

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries [B, H, T, D], keys and values [B, H_kv, T, D] (views of the projections' outputs)."""
        batch, seq, _ = x.shape
        if self.fused:
            heads = self.qkv_proj(x).view(batch, seq, self.n_heads + 2 * self.n_kv_heads, self.head_dim)
            q, k, v = heads.split([self.n_heads, self.n_kv_heads, self.n_kv_heads], dim=2)
            return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        q = self.q_proj(x).view(batch, seq, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        return q, k, v
