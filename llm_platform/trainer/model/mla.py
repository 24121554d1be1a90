"""Multi-head latent attention (DeepSeek-V2/V3).

Keys and values are rebuilt from one low-rank latent per token (``kv_lora_rank`` wide), so a KV cache stores that
latent plus one shared RoPE key instead of full per-head keys and values. Position information rides on a separate,
"decoupled" slice of each query/key head (``qk_rope_head_dim``), because RoPE does not commute with the up-projection.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import AttentionContext
from .config import ModelConfig
from .init import WeightInit, init_children
from .kernels import attention, resolve_flash_attn
from .norm import RMSNorm
from .rope import apply_rotary, yarn_mscale

# DeepSeek's reference normalises the latents with a fixed epsilon, whatever the block norm uses.
LATENT_NORM_EPS = 1e-6


def mla_softmax_scale(config: ModelConfig) -> float:
    """1/sqrt(d), times YaRN's mscale squared when the scaling carries ``mscale_all_dim`` (DeepSeek-V3 long context)."""
    scale = (config.qk_nope_head_dim + config.qk_rope_head_dim) ** -0.5
    s = config.rope_scaling
    if s and s.get("mscale_all_dim"):
        scale *= yarn_mscale(float(s["factor"]), float(s["mscale_all_dim"])) ** 2
    return scale


class LatentAttention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        c = config
        self.layer, self.n_heads, self.impl = layer, c.n_heads, c.attn_impl
        self.flash_fn = resolve_flash_attn(c.attn_impl)
        self.window = c.window_for_layer(layer)
        self.nope_dim, self.rope_dim, self.v_dim = c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim
        self.kv_lora_rank = c.kv_lora_rank
        qk_head = self.nope_dim + self.rope_dim
        self.compress_q = bool(c.q_lora_rank)
        if self.compress_q:
            self.q_a_proj = nn.Linear(c.dim, c.q_lora_rank, bias=False)
            self.q_a_norm = RMSNorm(c.q_lora_rank, LATENT_NORM_EPS)
            self.q_b_proj = nn.Linear(c.q_lora_rank, c.n_heads * qk_head, bias=False)
        else:
            self.q_proj = nn.Linear(c.dim, c.n_heads * qk_head, bias=False)
        self.kv_a_proj = nn.Linear(c.dim, c.kv_lora_rank + self.rope_dim, bias=False)
        self.kv_a_norm = RMSNorm(c.kv_lora_rank, LATENT_NORM_EPS)
        self.kv_b_proj = nn.Linear(c.kv_lora_rank, c.n_heads * (self.nope_dim + self.v_dim), bias=False)
        self.o_proj = nn.Linear(c.n_heads * self.v_dim, c.dim, bias=c.attn_out_bias)
        self.scale = mla_softmax_scale(c)

    def _queries(self, x: torch.Tensor) -> torch.Tensor:
        if self.compress_q:
            return self.q_b_proj(self.q_a_norm(self.q_a_proj(x)))
        return self.q_proj(x)

    def forward(self, x: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        batch, seq, _ = x.shape
        q = self._queries(x).view(batch, seq, self.n_heads, -1).transpose(1, 2)
        q_nope, q_rope = q.split([self.nope_dim, self.rope_dim], dim=-1)

        latent, k_rope = self.kv_a_proj(x).split([self.kv_lora_rank, self.rope_dim], dim=-1)
        latent = self.kv_a_norm(latent).unsqueeze(1)  # [B, 1, T, rank]: one "head" shared by all heads
        k_rope = k_rope.unsqueeze(1)
        assert ctx.rope is not None, "MLA needs RoPE"
        q_rope, k_rope = apply_rotary(q_rope, *ctx.rope), apply_rotary(k_rope, *ctx.rope)

        k_positions = None
        if ctx.cache is not None:  # the cache holds the compressed latent, not per-head keys and values
            latent, k_rope, k_positions = ctx.cache.update(self.layer, latent, k_rope, ctx.start_pos)
        keys_len = latent.shape[2]
        kv = self.kv_b_proj(latent.squeeze(1)).view(batch, keys_len, self.n_heads, -1).transpose(1, 2)
        k_nope, v = kv.split([self.nope_dim, self.v_dim], dim=-1)
        k = torch.cat((k_nope, k_rope.expand(-1, self.n_heads, -1, -1)), dim=-1)
        q = torch.cat((q_nope, q_rope), dim=-1)

        if ctx.attend is not None:
            out = ctx.attend(q, k, v, scale=self.scale, window=self.window)
            return self.o_proj(out.transpose(1, 2).reshape(batch, seq, -1))
        out = attention(
            q,
            k,
            v,
            scale=self.scale,
            q_positions=ctx.positions,
            k_positions=k_positions,
            window=self.window,
            impl=self.impl,
            flash_fn=self.flash_fn,
        )
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, -1))

    def init_weights(self, init: WeightInit) -> None:
        """Projections Normal(0, std), o_proj (into the residual stream) the residual std, latent norms unit gains."""
        init_children(self, init, residual=self.o_proj)
