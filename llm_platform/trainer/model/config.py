"""Model configuration: one dataclass for every decoder we build, plus named presets.

This module must import without torch: the LLMJob API validates ``spec.model.overrides`` keys against
``dataclasses.fields(ModelConfig)`` and the CLI has to start fast.

Field names follow Hugging Face Llama where that reads well (``vocab_size``, ``num_kv_heads``, ``rope_theta``)
and the short nanoGPT/litgpt names elsewhere (``dim``, ``n_layers``, ``n_heads``, ``ffn_dim``).
``hf.py`` maps them to and from each family's ``config.json``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from .config_checks import validate
from .counting import flops_per_token, num_params

# The choices of each string setting, declared once: `validate` and the LLMJob's `spec.model.overrides` read them
# from the field types (`typing.get_args`).
Norm = Literal["rmsnorm", "layernorm"]
Mlp = Literal["swiglu", "geglu", "geglu_tanh", "reglu", "gelu"]
PositionEncoding = Literal["rope", "alibi", "none"]
Attention = Literal["gqa", "mla"]
RouterScore = Literal["softmax", "sigmoid"]
AttnImpl = Literal["auto", "sdpa", "flash_attn", "cudnn", "flash", "efficient", "math"]
Kernels = Literal["torch", "triton", "liger"]
ResidualDtype = Literal["float32", "autocast"]


@dataclass
class ModelConfig:
    """Architecture of a decoder-only transformer.

    Sizes
        vocab_size: tokens in the embedding and LM head.
        dim: residual stream width (HF ``hidden_size``).
        n_layers: decoder blocks (HF ``num_hidden_layers``).
        n_heads: query heads (HF ``num_attention_heads``).
        num_kv_heads: key/value heads; ``None`` means ``n_heads`` (MHA), 1 is MQA, anything between is GQA.
        head_dim: width of one head; ``None`` means ``dim // n_heads``.
        ffn_dim: hidden width of the dense MLP (HF ``intermediate_size``).
        max_seq_len: longest sequence the model is meant for (HF ``max_position_embeddings``).
        tie_embeddings: share the token embedding with the LM head.

    Block
        norm: ``rmsnorm`` or ``layernorm``; norm_eps its epsilon.
        mlp: ``swiglu`` (default), ``geglu`` (exact GELU gate), ``geglu_tanh``, ``reglu`` or ``gelu`` (not gated).
        mlp_bias / qkv_bias / attn_out_bias: biases on the MLP, the q/k/v projections (Qwen2) and the output projection.
        qk_norm: RMSNorm over each query and key head before RoPE (Qwen3, OLMo-2 style).
        sliding_window: each token sees itself and the ``sliding_window - 1`` tokens before it; ``None`` = full causal.
        sliding_window_layers: the layer indices that use the window; ``None`` means all layers.

    Positions
        position_encoding: ``rope`` (default), ``alibi`` or ``none``.
        rope_theta: RoPE base.
        rope_scaling: ``None`` or a dict with ``type`` (``linear``, ``dynamic-ntk``, ``yarn``, ``llama3``), ``factor``,
            ``original_max_seq_len`` (the pre-training context; defaults to ``max_seq_len``); yarn also takes
            ``beta_fast``, ``beta_slow``, ``mscale``, ``mscale_all_dim``, ``attention_factor``, ``truncate``;
            llama3 takes ``low_freq_factor`` and ``high_freq_factor``.

    Multi-head latent attention (``attention="mla"``, DeepSeek-V2/V3)
        q_lora_rank: rank of the query compression; ``None`` projects queries directly.
        kv_lora_rank: width of the compressed key/value latent (what the KV cache stores).
        qk_nope_head_dim / qk_rope_head_dim / v_head_dim: per-head widths of the position-free query/key part,
            the decoupled RoPE part and the values.

    Mixture of experts (``n_experts > 0``)
        n_experts: routed experts per MoE layer; n_experts_per_token: top-k.
        n_shared_experts: experts every token goes through (DeepSeek); moe_ffn_dim: hidden width of one expert
            (``None`` = ``ffn_dim``).
        first_dense_layers: leading layers that keep a dense MLP; moe_layer_interval: every k-th layer after them is
            MoE.
        router_score: ``softmax`` (Mixtral) or ``sigmoid`` (DeepSeek-V3); router_norm_topk renormalises the top-k
            weights; router_scale multiplies them (DeepSeek ``routed_scaling_factor``).
        router_groups / router_topk_groups: group-limited routing (DeepSeek-V3): experts are picked only inside the
            best groups.
        router_aux_loss_coef: weight of the load-balancing loss that ``Transformer.aux_loss()`` returns.
        router_bias_update_rate: step of the auxiliary-loss-free balancing bias (0 disables the update).
        moe_capacity_factor: ``None`` routes without dropping; a number caps each expert at
            ``ceil(factor * tokens * top_k / n_experts)`` tokens and drops the overflow.

    Runtime
        init_std: standard deviation of the initial weights.
        attn_impl: attention kernel: ``auto`` (flash_attn package if installed, else SDPA with the fastest backend),
            ``sdpa``, ``flash_attn``, or one SDPA backend (``cudnn``, ``flash``, ``efficient``, ``math``). It picks
            among CUDA kernels; on CPU, PyTorch's CPU attention always runs (``flash_attn`` then raises).
        fused_projections: one ``qkv_proj`` for the queries, keys and values and one ``gate_up_proj`` for a gated MLP
            (fewer, larger GEMMs; MLA's low-rank projections and MoE experts stay as they are). Hugging Face
            checkpoints keep the separate weights: ``hf.py`` joins them on load and splits them on save. Off by
            default because adapters (LoRA targets such as ``q_proj``) name the separate projections.
        kernels: element-wise kernels: ``torch`` (plain PyTorch, which ``torch.compile`` fuses), ``triton`` (ours:
            RMSNorm + residual add, SwiGLU, rotary; ``fused_ops.py``) or ``liger`` (liger-kernel's, needs the
            package). On CPU every choice runs the PyTorch path.
        residual_dtype: ``float32`` keeps the residual stream in the parameters' dtype (float32 master weights under
            autocast); ``autocast`` casts the embedding output to the autocast dtype (bf16), halving the bytes every
            residual add, norm and their gradients move.
    """

    vocab_size: int = 32000
    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    num_kv_heads: int | None = None
    head_dim: int | None = None
    ffn_dim: int = 11008
    max_seq_len: int = 4096
    tie_embeddings: bool = False

    norm: Norm = "rmsnorm"
    norm_eps: float = 1e-5
    mlp: Mlp = "swiglu"
    mlp_bias: bool = False
    qkv_bias: bool = False
    attn_out_bias: bool = False
    qk_norm: bool = False
    sliding_window: int | None = None
    sliding_window_layers: list[int] | None = None

    position_encoding: PositionEncoding = "rope"
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None

    attention: Attention = "gqa"
    q_lora_rank: int | None = None
    kv_lora_rank: int = 512
    qk_nope_head_dim: int = 128
    qk_rope_head_dim: int = 64
    v_head_dim: int = 128

    n_experts: int = 0
    n_experts_per_token: int = 2
    n_shared_experts: int = 0
    moe_ffn_dim: int | None = None
    first_dense_layers: int = 0
    moe_layer_interval: int = 1
    router_score: RouterScore = "softmax"
    router_norm_topk: bool = True
    router_scale: float = 1.0
    router_groups: int = 1
    router_topk_groups: int = 1
    router_aux_loss_coef: float = 0.01
    router_bias_update_rate: float = 0.0
    moe_capacity_factor: float | None = None

    init_std: float = 0.02
    attn_impl: AttnImpl = "auto"
    fused_projections: bool = False
    kernels: Kernels = "torch"
    residual_dtype: ResidualDtype = "float32"

    def __post_init__(self) -> None:
        validate(self)

    # Derived sizes. Kept as properties, not resolved fields, so that overriding ``dim`` or ``n_heads`` on a preset
    # re-derives them instead of keeping the preset's numbers.
    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.n_heads

    @property
    def head_size(self) -> int:
        return self.head_dim or self.dim // self.n_heads

    @property
    def expert_ffn_dim(self) -> int:
        return self.moe_ffn_dim or self.ffn_dim

    def is_moe_layer(self, layer: int) -> bool:
        """Whether block ``layer`` uses a mixture of experts instead of the dense MLP."""
        after_dense = layer - self.first_dense_layers
        return self.n_experts > 0 and after_dense >= 0 and after_dense % self.moe_layer_interval == 0

    def window_for_layer(self, layer: int) -> int | None:
        """The sliding window of block ``layer`` (``None`` = full causal attention)."""
        if self.sliding_window is None:
            return None
        if self.sliding_window_layers is None or layer in self.sliding_window_layers:
            return self.sliding_window
        return None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        problem = unknown_fields_problem(data)
        if problem:
            raise ValueError(problem)
        return cls(**data)


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(ModelConfig)]


def unknown_fields_problem(keys: Iterable[str], noun: str = "ModelConfig field") -> str | None:
    """What is wrong with these setting names, naming the unknown ones and the valid ones; None if all are fields.
    The one check of model setting names: `from_dict`, `get_config` and the API's `spec.model.overrides` use it."""
    unknown = [key for key in keys if key not in field_names()]
    if not unknown:
        return None
    return f"unknown {noun}(s) {', '.join(map(str, unknown))}; valid keys: {', '.join(field_names())}"


def unknown_preset_problem(preset: str) -> str | None:
    """What is wrong with this preset name, with the known ones; None if it is a preset. The one check of it."""
    if preset in PRESETS:
        return None
    return f"unknown preset '{preset}'; known presets: {', '.join(sorted(PRESETS))}"


def _tiny(**kw: Any) -> ModelConfig:
    base: dict[str, Any] = dict(
        vocab_size=512, dim=128, n_layers=2, n_heads=4, num_kv_heads=2, ffn_dim=352, max_seq_len=256
    )
    return ModelConfig(**{**base, **kw})


PRESETS: dict[str, ModelConfig] = {
    # Test and quickstart sizes: run a training step on a laptop CPU in milliseconds.
    "llama-tiny": _tiny(tie_embeddings=True),
    "mistral-tiny": _tiny(sliding_window=64),
    "qwen2-tiny": _tiny(qkv_bias=True, rope_theta=1_000_000.0, norm_eps=1e-6),
    "mixtral-tiny": _tiny(n_experts=4, n_experts_per_token=2, ffn_dim=256),
    "deepseek-tiny": _tiny(
        attention="mla",
        n_heads=4,
        num_kv_heads=4,  # MLA has no separate KV heads; kept equal to n_heads as in DeepSeek's config.json
        q_lora_rank=64,
        kv_lora_rank=32,
        qk_nope_head_dim=32,
        qk_rope_head_dim=16,
        v_head_dim=32,
        n_experts=8,
        n_experts_per_token=2,
        n_shared_experts=1,
        moe_ffn_dim=64,
        first_dense_layers=1,
        router_score="sigmoid",
        router_scale=2.5,
        router_groups=4,
        router_topk_groups=2,
        router_bias_update_rate=1e-3,
    ),
    # Research sizes: GPT-3 "Small" and "Medium" widths and depths with a Llama block (110M and 341M parameters
    # with a 32K vocabulary and tied embeddings).
    "llama-125m": ModelConfig(
        vocab_size=32000,
        dim=768,
        n_layers=12,
        n_heads=12,
        num_kv_heads=12,
        ffn_dim=2048,
        max_seq_len=2048,
        tie_embeddings=True,
    ),
    "llama-350m": ModelConfig(
        vocab_size=32000,
        dim=1024,
        n_layers=24,
        n_heads=16,
        num_kv_heads=16,
        ffn_dim=2816,
        max_seq_len=2048,
        tie_embeddings=True,
    ),
    # Published architectures.
    "llama-1b": ModelConfig(  # Llama 3.2 1B
        vocab_size=128256,
        dim=2048,
        n_layers=16,
        n_heads=32,
        num_kv_heads=8,
        ffn_dim=8192,
        max_seq_len=131072,
        tie_embeddings=True,
        rope_theta=500000.0,
        rope_scaling={
            "type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_seq_len": 8192,
        },
    ),
    "llama-7b": ModelConfig(
        vocab_size=32000, dim=4096, n_layers=32, n_heads=32, num_kv_heads=32, ffn_dim=11008, max_seq_len=4096
    ),
    "llama3-8b": ModelConfig(
        vocab_size=128256,
        dim=4096,
        n_layers=32,
        n_heads=32,
        num_kv_heads=8,
        ffn_dim=14336,
        max_seq_len=8192,
        rope_theta=500000.0,
    ),
    "mistral-7b": ModelConfig(
        vocab_size=32000,
        dim=4096,
        n_layers=32,
        n_heads=32,
        num_kv_heads=8,
        ffn_dim=14336,
        max_seq_len=32768,
        sliding_window=4096,
        norm_eps=1e-5,
    ),
    "mixtral-8x7b": ModelConfig(
        vocab_size=32000,
        dim=4096,
        n_layers=32,
        n_heads=32,
        num_kv_heads=8,
        ffn_dim=14336,
        max_seq_len=32768,
        rope_theta=1_000_000.0,
        n_experts=8,
        n_experts_per_token=2,
    ),
    "deepseek-v3": ModelConfig(
        vocab_size=129280,
        dim=7168,
        n_layers=61,
        n_heads=128,
        num_kv_heads=128,
        ffn_dim=18432,
        max_seq_len=163840,
        norm_eps=1e-6,
        attention="mla",
        q_lora_rank=1536,
        kv_lora_rank=512,
        qk_nope_head_dim=128,
        qk_rope_head_dim=64,
        v_head_dim=128,
        rope_scaling={
            "type": "yarn",
            "factor": 40.0,
            "original_max_seq_len": 4096,
            "beta_fast": 32,
            "beta_slow": 1,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
        },
        n_experts=256,
        n_experts_per_token=8,
        n_shared_experts=1,
        moe_ffn_dim=2048,
        first_dense_layers=3,
        router_score="sigmoid",
        router_scale=2.5,
        router_groups=8,
        router_topk_groups=4,
        router_aux_loss_coef=0.0001,
        router_bias_update_rate=1e-3,
    ),
}


def get_config(preset: str, **overrides: Any) -> ModelConfig:
    """The named preset with ``overrides`` applied (validated again as a whole).

    Raises ValueError naming the unknown preset or override key, with the valid choices.
    """
    problem = unknown_preset_problem(preset) or unknown_fields_problem(overrides, "model override")
    if problem:
        raise ValueError(problem)
    # Deep copies: a config never shares a mutable field (rope_scaling, sliding_window_layers) with a preset or caller.
    return dataclasses.replace(copy.deepcopy(PRESETS[preset]), **copy.deepcopy(overrides))


def capacity(config: ModelConfig, n_tokens: int) -> int:
    """Tokens one expert may take when ``moe_capacity_factor`` is set."""
    assert config.moe_capacity_factor is not None
    expected = n_tokens * config.n_experts_per_token / config.n_experts
    return max(1, math.ceil(config.moe_capacity_factor * expected))


__all__ = [
    "ModelConfig",
    "PRESETS",
    "get_config",
    "field_names",
    "unknown_fields_problem",
    "unknown_preset_problem",
    "capacity",
    "num_params",
    "flops_per_token",
]
