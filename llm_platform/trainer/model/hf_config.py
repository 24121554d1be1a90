"""Hugging Face ``config.json`` <-> ModelConfig, for Llama, Mistral, Qwen2, Qwen3, Mixtral and DeepSeek-V3.

Pure dictionaries in and out (no torch, no transformers). Keys a checkpoint leaves out take the value the
transformers class would default to, listed per family below.
"""

from __future__ import annotations

from typing import Any

from .config import ModelConfig

ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "mixtral": "MixtralForCausalLM",
    "deepseek_v3": "DeepseekV3ForCausalLM",
}
# transformers' class defaults for keys that checkpoints often omit.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {"rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 2048},
    "mistral": {"rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 131072, "sliding_window": 4096},
    "qwen2": {"rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 32768},
    "qwen3": {"rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 32768},
    "mixtral": {"rms_norm_eps": 1e-5, "rope_theta": 1e6, "max_position_embeddings": 131072, "num_local_experts": 8},
    "deepseek_v3": {"rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 4096},
}
_ACT_TO_MLP = {
    "silu": "swiglu",
    "swish": "swiglu",
    "gelu": "geglu",
    "gelu_pytorch_tanh": "geglu_tanh",
    "gelu_new": "geglu_tanh",
    "relu": "reglu",
}
_MLP_TO_ACT = {"swiglu": "silu", "geglu": "gelu", "geglu_tanh": "gelu_pytorch_tanh", "reglu": "relu"}
_ROPE_TYPES = {"linear": "linear", "dynamic": "dynamic-ntk", "yarn": "yarn", "llama3": "llama3"}
_ROPE_KEYS = {  # HF key -> our key
    "factor": "factor",
    "original_max_position_embeddings": "original_max_seq_len",
    "beta_fast": "beta_fast",
    "beta_slow": "beta_slow",
    "mscale": "mscale",
    "mscale_all_dim": "mscale_all_dim",
    "attention_factor": "attention_factor",
    "truncate": "truncate",
    "low_freq_factor": "low_freq_factor",
    "high_freq_factor": "high_freq_factor",
}


class UnsupportedCheckpoint(ValueError):
    """The checkpoint or the config uses something this model library cannot represent."""


def _rope_from_hf(hf: dict[str, Any], family: str) -> tuple[float, dict[str, Any] | None]:
    """(rope_theta, our rope_scaling) from either the 4.x keys (rope_theta + rope_scaling) or 5.x rope_parameters."""
    params = dict(hf.get("rope_scaling") or hf.get("rope_parameters") or {})
    theta = float(params.pop("rope_theta", None) or hf.get("rope_theta") or _DEFAULTS[family]["rope_theta"])
    kind = params.pop("rope_type", None) or params.pop("type", None) or "default"
    if kind == "default":
        return theta, None
    if kind not in _ROPE_TYPES:
        raise UnsupportedCheckpoint(f"config.json rope type {kind!r} is not supported; supported: {list(_ROPE_TYPES)}")
    scaling: dict[str, Any] = {"type": _ROPE_TYPES[kind]}
    for hf_key, value in params.items():
        if hf_key in _ROPE_KEYS and value is not None:
            scaling[_ROPE_KEYS[hf_key]] = value
    if kind == "dynamic":  # transformers grows dynamic NTK from max_position_embeddings, whatever else is set
        scaling.pop("original_max_seq_len", None)
    return theta, scaling


def _rope_to_hf(c: ModelConfig) -> dict[str, Any] | None:
    if c.rope_scaling is None:
        return None
    ours_to_hf = {v: k for k, v in _ROPE_KEYS.items()}
    kind = {v: k for k, v in _ROPE_TYPES.items()}[c.rope_scaling["type"]]
    out: dict[str, Any] = {"rope_type": kind}
    for key, value in c.rope_scaling.items():
        if key != "type" and not (kind == "dynamic" and key == "original_max_seq_len"):
            out[ours_to_hf[key]] = value
    if kind in ("yarn", "llama3"):
        out.setdefault("original_max_position_embeddings", c.max_seq_len)
    return out


def _sliding_from_hf(hf: dict[str, Any], n_layers: int) -> tuple[int | None, list[int] | None]:
    window = hf.get("sliding_window")
    layer_types = hf.get("layer_types")
    if "use_sliding_window" in hf and not hf["use_sliding_window"]:
        return None, None
    if not window:
        return None, None
    if layer_types is None and "max_window_layers" in hf:
        layer_types = ["sliding_attention" if i >= hf["max_window_layers"] else "full" for i in range(n_layers)]
    if layer_types is None or all(t == "sliding_attention" for t in layer_types):
        return int(window), None
    sliding = [i for i, t in enumerate(layer_types) if t == "sliding_attention"]
    return (int(window), sliding) if sliding else (None, None)


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    """ModelConfig from a Hugging Face ``config.json`` dict."""
    family = hf.get("model_type")
    if "quantization_config" in hf:
        method = hf["quantization_config"].get("quant_method", "?")
        raise UnsupportedCheckpoint(
            f"config.json has quantization_config ({method}); load a bf16/fp16/fp32 checkpoint instead"
        )
    if family not in ARCHITECTURES:
        raise UnsupportedCheckpoint(
            f"config.json model_type {family!r} is not supported; supported: {sorted(ARCHITECTURES)}"
        )

    def get(key: str, default: Any = None) -> Any:
        return hf[key] if hf.get(key) is not None else _DEFAULTS[family].get(key, default)

    act = get("hidden_act", "silu")
    if act not in _ACT_TO_MLP:
        raise UnsupportedCheckpoint(f"config.json hidden_act {act!r} is not supported; supported: {list(_ACT_TO_MLP)}")
    n_layers, n_heads = hf["num_hidden_layers"], hf["num_attention_heads"]
    theta, scaling = _rope_from_hf(hf, family)
    head_dim = hf.get("head_dim")
    if head_dim == hf["hidden_size"] // n_heads:
        head_dim = None
    attention_bias = bool(get("attention_bias", False))
    window, window_layers = _sliding_from_hf(hf, n_layers)
    fields: dict[str, Any] = dict(
        vocab_size=hf["vocab_size"],
        dim=hf["hidden_size"],
        n_layers=n_layers,
        n_heads=n_heads,
        num_kv_heads=get("num_key_value_heads") or n_heads,
        head_dim=head_dim,
        ffn_dim=hf["intermediate_size"],
        max_seq_len=get("max_position_embeddings"),
        tie_embeddings=bool(get("tie_word_embeddings", False)),
        norm_eps=float(get("rms_norm_eps")),
        mlp=_ACT_TO_MLP[act],
        mlp_bias=bool(get("mlp_bias", False)),
        qkv_bias=attention_bias or family == "qwen2",
        attn_out_bias=attention_bias,
        qk_norm=family == "qwen3",
        sliding_window=window,
        sliding_window_layers=window_layers,
        rope_theta=theta,
        rope_scaling=scaling,
        init_std=float(get("initializer_range", 0.02)),
    )
    if family == "mixtral":
        fields.update(
            n_experts=get("num_local_experts"),
            n_experts_per_token=get("num_experts_per_tok", 2),
            router_aux_loss_coef=float(get("router_aux_loss_coef", 0.02)),
        )
    if family == "deepseek_v3":
        fields.update(_deepseek_from_hf(hf, get))
    return ModelConfig(**fields)


def _deepseek_from_hf(hf: dict[str, Any], get) -> dict[str, Any]:
    return dict(
        attention="mla",
        num_kv_heads=hf["num_attention_heads"],
        head_dim=None,
        qkv_bias=False,
        attn_out_bias=False,
        q_lora_rank=hf.get("q_lora_rank"),
        kv_lora_rank=hf["kv_lora_rank"],
        qk_nope_head_dim=hf["qk_nope_head_dim"],
        qk_rope_head_dim=hf["qk_rope_head_dim"],
        v_head_dim=hf["v_head_dim"],
        # every layer dense (first_k_dense_replace covers them all): the routed experts are a placeholder
        n_experts=0 if get("first_k_dense_replace", 0) >= hf["num_hidden_layers"] else hf["n_routed_experts"],
        n_experts_per_token=hf["num_experts_per_tok"],
        n_shared_experts=get("n_shared_experts", 1),
        moe_ffn_dim=hf["moe_intermediate_size"],
        first_dense_layers=get("first_k_dense_replace", 0),
        router_score="sigmoid",
        router_norm_topk=bool(get("norm_topk_prob", True)),
        router_scale=float(get("routed_scaling_factor", 1.0)),
        router_groups=get("n_group", 1),
        router_topk_groups=get("topk_group", 1),
        router_aux_loss_coef=0.0001,
        router_bias_update_rate=1e-3,
    )


def hf_family(c: ModelConfig) -> str:
    """The transformers model_type that represents ``c`` exactly; UnsupportedCheckpoint naming the blocking field."""
    blockers = {
        "position_encoding": c.position_encoding != "rope",
        "norm": c.norm != "rmsnorm",
        "mlp": c.mlp not in _MLP_TO_ACT,
    }
    for name, blocked in blockers.items():
        if blocked:
            raise UnsupportedCheckpoint(f"ModelConfig.{name}={getattr(c, name)!r} has no Hugging Face equivalent")
    if c.attention == "mla":
        return "deepseek_v3"
    if c.n_experts:
        return "mixtral"
    if c.qk_norm:
        return "qwen3"
    if (c.qkv_bias and not c.attn_out_bias) or c.sliding_window_layers is not None:
        return "qwen2"
    if c.sliding_window is not None:
        return "mistral"
    return "llama"


def _check_exportable(c: ModelConfig, family: str) -> None:
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise UnsupportedCheckpoint(f"cannot export as {family}: {message}")

    need(not c.qk_norm or family == "qwen3", "qk_norm exists only in qwen3")
    need(c.sliding_window_layers is None or family in ("qwen2", "qwen3"), "per-layer sliding windows need qwen2/qwen3")
    need(c.sliding_window is None or family not in ("llama", "deepseek_v3"), "sliding_window is not supported")
    need(not c.mlp_bias or family == "llama", "mlp_bias exists only in llama")
    if family in ("llama", "qwen3"):
        need(c.qkv_bias == c.attn_out_bias, "attention_bias covers q, k, v and o together")
    elif family == "qwen2":
        need(not c.attn_out_bias, "Qwen2 has no output-projection bias")
    else:
        need(not c.qkv_bias and not c.attn_out_bias, "attention biases are not supported")
    if family == "mixtral":
        need(c.router_score == "softmax" and c.router_norm_topk, "Mixtral routes with a renormalised softmax")
        need(c.n_shared_experts == 0 and c.router_scale == 1.0 and c.router_groups == 1, "Mixtral has plain routing")
        need(c.first_dense_layers == 0 and c.moe_layer_interval == 1, "every Mixtral layer is MoE")
    if family == "deepseek_v3" and c.n_experts:
        need(c.router_score == "sigmoid", "DeepSeek-V3 routes with sigmoid scores")
        need(c.n_shared_experts > 0, "DeepSeek-V3 has at least one shared expert")
        need(c.moe_layer_interval == 1, "DeepSeek-V3 MoE layers are contiguous")


def config_to_hf(c: ModelConfig, dtype: str = "float32") -> dict[str, Any]:
    """A ``config.json`` dict that transformers' AutoModelForCausalLM loads into the same architecture."""
    family = hf_family(c)
    _check_exportable(c, family)
    out: dict[str, Any] = {
        "architectures": [ARCHITECTURES[family]],
        "model_type": family,
        "vocab_size": c.vocab_size,
        "hidden_size": c.dim,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.kv_heads,
        "head_dim": c.head_size,
        "intermediate_size": c.ffn_dim,
        "max_position_embeddings": c.max_seq_len,
        "tie_word_embeddings": c.tie_embeddings,
        "rms_norm_eps": c.norm_eps,
        "hidden_act": _MLP_TO_ACT[c.mlp],
        "rope_theta": c.rope_theta,
        "rope_scaling": _rope_to_hf(c),
        "initializer_range": c.init_std,
        "attention_dropout": 0.0,
        "torch_dtype": dtype,
        "dtype": dtype,
        "use_cache": True,
    }
    if c.rope_scaling and c.rope_scaling["type"] == "dynamic-ntk" and c.rope_scaling.get("original_max_seq_len"):
        out["max_position_embeddings"] = c.rope_scaling["original_max_seq_len"]
    if family in ("llama", "qwen3"):
        out.update(attention_bias=c.qkv_bias, mlp_bias=c.mlp_bias)
    if family in ("mistral", "mixtral"):
        out["sliding_window"] = c.sliding_window
    if family in ("qwen2", "qwen3"):
        layer_types = ["sliding_attention" if c.window_for_layer(i) else "full_attention" for i in range(c.n_layers)]
        first_sliding = next((i for i, t in enumerate(layer_types) if t == "sliding_attention"), c.n_layers)
        out.update(
            use_sliding_window=c.sliding_window is not None,
            sliding_window=c.sliding_window,
            max_window_layers=first_sliding,
            layer_types=layer_types,
        )
    if family == "mixtral":
        out.update(
            num_local_experts=c.n_experts,
            num_experts_per_tok=c.n_experts_per_token,
            router_aux_loss_coef=c.router_aux_loss_coef,
            output_router_logits=False,
        )
    if family == "deepseek_v3":
        out.update(_deepseek_to_hf(c))
    return out


def _deepseek_to_hf(c: ModelConfig) -> dict[str, Any]:
    moe = c.n_experts > 0
    return {
        "num_key_value_heads": c.n_heads,
        "head_dim": c.qk_rope_head_dim,
        "q_lora_rank": c.q_lora_rank,
        "kv_lora_rank": c.kv_lora_rank,
        "qk_nope_head_dim": c.qk_nope_head_dim,
        "qk_rope_head_dim": c.qk_rope_head_dim,
        "v_head_dim": c.v_head_dim,
        "n_routed_experts": c.n_experts if moe else 1,
        "num_experts_per_tok": c.n_experts_per_token if moe else 1,
        "n_shared_experts": c.n_shared_experts if moe else 1,
        "moe_intermediate_size": c.expert_ffn_dim,
        "first_k_dense_replace": c.first_dense_layers if moe else c.n_layers,
        "n_group": c.router_groups if moe else 1,  # a dense model's one placeholder expert sits in one group
        "topk_group": c.router_topk_groups if moe else 1,
        "norm_topk_prob": c.router_norm_topk,
        "routed_scaling_factor": c.router_scale,
        "rope_interleave": True,
        "attention_bias": False,
        "num_nextn_predict_layers": 0,
    }
