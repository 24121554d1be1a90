"""Parameter and FLOP counts computed from a ModelConfig alone (no torch), for sizing jobs and for MFU.

``num_params`` matches ``sum(p.numel() for p in Transformer(config).parameters())`` exactly; the tests check it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # no runtime import: config.py re-exports these functions
    from .config import ModelConfig

_GATED = ("swiglu", "geglu", "geglu_tanh", "reglu")


def _mlp_params(c: ModelConfig, hidden: int) -> int:
    matrices = 3 if c.mlp in _GATED else 2
    bias = (hidden * (matrices - 1) + c.dim) if c.mlp_bias else 0
    return matrices * c.dim * hidden + bias


def _norm_params(c: ModelConfig, width: int) -> int:
    return width * (2 if c.norm == "layernorm" else 1)


def _attention_params(c: ModelConfig) -> int:
    if c.attention == "mla":
        qk_head = c.qk_nope_head_dim + c.qk_rope_head_dim
        if c.q_lora_rank:
            q = c.dim * c.q_lora_rank + _norm_params(c, c.q_lora_rank) + c.q_lora_rank * c.n_heads * qk_head
        else:
            q = c.dim * c.n_heads * qk_head
        kv_a = c.dim * (c.kv_lora_rank + c.qk_rope_head_dim) + _norm_params(c, c.kv_lora_rank)
        kv_b = c.kv_lora_rank * c.n_heads * (c.qk_nope_head_dim + c.v_head_dim)
        out = c.n_heads * c.v_head_dim * c.dim + (c.dim if c.attn_out_bias else 0)
        return q + kv_a + kv_b + out
    q_width, kv_width = c.n_heads * c.head_size, c.kv_heads * c.head_size
    qkv = c.dim * (q_width + 2 * kv_width) + ((q_width + 2 * kv_width) if c.qkv_bias else 0)
    out = q_width * c.dim + (c.dim if c.attn_out_bias else 0)
    qk_norm = 2 * _norm_params(c, c.head_size) if c.qk_norm else 0
    return qkv + out + qk_norm


def _ffn_params(c: ModelConfig, layer: int, active: bool) -> int:
    if not c.is_moe_layer(layer):
        return _mlp_params(c, c.ffn_dim)
    routed = c.n_experts_per_token if active else c.n_experts
    router = c.n_experts * c.dim
    shared = _mlp_params(c, c.expert_ffn_dim * c.n_shared_experts) if c.n_shared_experts else 0
    return router + routed * _mlp_params(c, c.expert_ffn_dim) + shared


def num_params(config: ModelConfig, *, active: bool = False, embeddings: bool = True) -> int:
    """Number of parameters.

    active: count only the routed experts one token uses (MoE "activated parameters").
    embeddings: include the token embedding (and the LM head when it is tied, since it is the same tensor).
    """
    c = config
    blocks = sum(
        _attention_params(c) + _ffn_params(c, i, active) + 2 * _norm_params(c, c.dim) for i in range(c.n_layers)
    )
    embed = c.vocab_size * c.dim
    head = 0 if c.tie_embeddings else c.vocab_size * c.dim
    return blocks + _norm_params(c, c.dim) + head + (embed if embeddings else 0)


def attention_flops_per_token(config: ModelConfig, seq_len: int) -> int:
    """Training FLOPs per token of the score and value matmuls (forward + backward), PaLM appendix B convention.

    Each of QK^T and AV costs 2 FLOPs per multiply-add, times 3 for forward + backward; no discount for the causal
    mask (the usual MFU convention). A sliding window bounds the keys a query sees.
    """
    c = config
    total = 0
    for layer in range(c.n_layers):
        window = c.window_for_layer(layer)
        keys = min(seq_len, window) if window else seq_len
        width = c.qk_nope_head_dim + c.qk_rope_head_dim + c.v_head_dim if c.attention == "mla" else 2 * c.head_size
        total += 6 * c.n_heads * width * keys
    return total


def flops_per_token(config: ModelConfig, seq_len: int) -> int:
    """Training FLOPs per token (forward + backward) for MFU: 6 x active matmul parameters + attention.

    The embedding lookup is not a matmul and is left out; the LM head is counted even when tied.
    """
    matmul_params = num_params(config, active=True, embeddings=False)
    if config.tie_embeddings:
        matmul_params += config.vocab_size * config.dim
    return 6 * matmul_params + attention_flops_per_token(config, seq_len)
