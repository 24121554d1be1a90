"""Validation of ModelConfig: each error names the field, the bad value and what is allowed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import ModelConfig

NORMS = ("rmsnorm", "layernorm")
MLPS = ("swiglu", "geglu", "geglu_tanh", "reglu", "gelu")
POSITION_ENCODINGS = ("rope", "alibi", "none")
ATTENTIONS = ("gqa", "mla")
ROUTER_SCORES = ("softmax", "sigmoid")
ATTN_IMPLS = ("auto", "sdpa", "flash_attn", "cudnn", "flash", "efficient", "math")
KERNELS = ("torch", "triton", "liger")
RESIDUAL_DTYPES = ("float32", "autocast")
ROPE_SCALING_KEYS = {
    "linear": {"type", "factor"},
    "dynamic-ntk": {"type", "factor", "original_max_seq_len"},
    "yarn": {
        "type",
        "factor",
        "original_max_seq_len",
        "beta_fast",
        "beta_slow",
        "mscale",
        "mscale_all_dim",
        "attention_factor",
        "truncate",
    },
    "llama3": {"type", "factor", "original_max_seq_len", "low_freq_factor", "high_freq_factor"},
}


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ValueError(f"ModelConfig.{name}: {message}")


def validate(c: ModelConfig) -> None:
    """Raises ValueError naming the first field that is out of range or inconsistent with the others."""
    for name in ("vocab_size", "dim", "n_layers", "n_heads", "ffn_dim", "max_seq_len", "moe_layer_interval"):
        _require(isinstance(getattr(c, name), int) and getattr(c, name) > 0, name, "must be a positive integer")
    for name, choices in (
        ("norm", NORMS),
        ("mlp", MLPS),
        ("position_encoding", POSITION_ENCODINGS),
        ("attention", ATTENTIONS),
        ("router_score", ROUTER_SCORES),
        ("attn_impl", ATTN_IMPLS),
        ("kernels", KERNELS),
        ("residual_dtype", RESIDUAL_DTYPES),
    ):
        _require(getattr(c, name) in choices, name, f"{getattr(c, name)!r} is not one of {list(choices)}")
    _require(c.num_kv_heads is None or c.num_kv_heads > 0, "num_kv_heads", "must be positive (or None for n_heads)")
    _require(
        c.n_heads % c.kv_heads == 0,
        "num_kv_heads",
        f"n_heads={c.n_heads} must be a multiple of num_kv_heads={c.kv_heads}",
    )
    _require(
        c.head_dim is not None or c.dim % c.n_heads == 0,
        "head_dim",
        f"dim={c.dim} is not divisible by n_heads={c.n_heads}; set head_dim explicitly",
    )
    _require(c.head_size % 2 == 0 or c.position_encoding != "rope", "head_dim", "RoPE needs an even head size")
    _require(c.sliding_window is None or c.sliding_window > 0, "sliding_window", "must be positive or None")
    if c.attention == "mla":
        _require(c.position_encoding == "rope", "position_encoding", "MLA uses decoupled RoPE; set 'rope'")
        _require(c.qk_rope_head_dim % 2 == 0, "qk_rope_head_dim", "must be even")
        _require(not c.qk_norm and not c.qkv_bias, "qk_norm", "qk_norm and qkv_bias are not defined for MLA")
    if c.n_experts:
        _require(c.mlp != "gelu", "mlp", "experts are gated MLPs; choose swiglu, geglu, geglu_tanh or reglu")
        _require(
            0 < c.n_experts_per_token <= c.n_experts,
            "n_experts_per_token",
            f"must be in 1..n_experts={c.n_experts}",
        )
        _require(c.n_experts % c.router_groups == 0, "router_groups", "must divide n_experts")
        _require(0 < c.router_topk_groups <= c.router_groups, "router_topk_groups", "must be in 1..router_groups")
        _require(
            c.n_experts_per_token <= c.router_topk_groups * (c.n_experts // c.router_groups),
            "n_experts_per_token",
            "is larger than the experts left after group-limited routing",
        )
        _require(c.moe_capacity_factor is None or c.moe_capacity_factor > 0, "moe_capacity_factor", "must be positive")
    if c.rope_scaling is not None:
        _validate_rope_scaling(c.rope_scaling)


def _validate_rope_scaling(scaling: dict[str, Any]) -> None:
    kind = scaling.get("type")
    _require(kind in ROPE_SCALING_KEYS, "rope_scaling", f"type {kind!r} is not one of {list(ROPE_SCALING_KEYS)}")
    unknown = sorted(set(scaling) - ROPE_SCALING_KEYS[kind])
    _require(not unknown, "rope_scaling", f"unknown key(s) {unknown} for type {kind!r}")
    factor = scaling.get("factor")
    _require(isinstance(factor, int | float) and factor > 0, "rope_scaling", "needs a positive 'factor'")
    if kind == "llama3":
        missing = sorted({"low_freq_factor", "high_freq_factor", "original_max_seq_len"} - set(scaling))
        _require(not missing, "rope_scaling", f"llama3 scaling needs {missing}")
