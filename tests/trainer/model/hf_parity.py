"""Shared by the parity tests: small transformers models per family, and the round trip through our loader and saver.

Plain helpers (transformers is imported inside them), so that modules importing this can still skip without it.
"""

from __future__ import annotations

import tempfile

import torch

from llm_platform.trainer.model.hf import load_pretrained, save_pretrained

TOLERANCE = 1e-4


def randomize(hf_model: torch.nn.Module, seed: int = 0) -> None:
    """Random values everywhere, norms and biases included, so that a mis-mapped tensor cannot hide behind an init of
    ones or zeros."""
    generator = torch.Generator().manual_seed(seed)
    # Non-persistent buffers are tables derived from the config (RoPE frequencies, cos/sin), not weights.
    derived = {name for name, _ in hf_model.named_buffers()} - set(hf_model.state_dict())
    with torch.no_grad():
        for name, tensor in list(hf_model.named_parameters()) + list(hf_model.named_buffers()):
            if not tensor.is_floating_point() or name in derived:
                continue
            noise = torch.randn(tensor.shape, generator=generator) * 0.05
            tensor.copy_(noise + 1.0 if "norm" in name else noise)


def roundtrip_max_diffs(
    hf_model: torch.nn.Module, seq_len: int = 40, batch: int = 2, fused_projections: bool = False
) -> tuple[float, float]:
    """(|HF - ours loaded from HF|, |HF - HF loaded from our save|), max abs over all logits; ours built with
    ``fused_projections`` or not."""
    from transformers import AutoModelForCausalLM

    hf_model.eval()
    ids = torch.randint(0, hf_model.config.vocab_size, (batch, seq_len), generator=torch.Generator().manual_seed(1))
    with tempfile.TemporaryDirectory() as hf_dir, tempfile.TemporaryDirectory() as our_dir, torch.no_grad():
        hf_model.save_pretrained(hf_dir)
        ours = load_pretrained(hf_dir, fused_projections=fused_projections).eval()
        fused_names = [n for n in ours.state_dict() if "qkv_proj" in n or "gate_up_proj" in n]
        assert bool(fused_names) == fused_projections, fused_names[:4]
        reference = hf_model(ids).logits
        loaded_diff = (ours(ids) - reference).abs().max().item()
        save_pretrained(ours, our_dir)
        reloaded = AutoModelForCausalLM.from_pretrained(our_dir).eval()
        saved_diff = (reloaded(ids).logits - reference).abs().max().item()
    return loaded_diff, saved_diff


SMALL = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, max_position_embeddings=64)

CASES = {
    # Llama: GQA ratios 1 (MHA), 4 and full MQA.
    "llama-mha": ("LlamaConfig", dict(num_attention_heads=4, num_key_value_heads=4)),
    "llama-gqa4-geglu-tanh": (
        "LlamaConfig",
        dict(num_attention_heads=8, num_key_value_heads=2, hidden_act="gelu_pytorch_tanh"),
    ),
    "llama-mqa-reglu": ("LlamaConfig", dict(num_attention_heads=8, num_key_value_heads=1, hidden_act="relu")),
    "llama-tied-bias-geglu": (
        "LlamaConfig",
        dict(
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=True,
            attention_bias=True,
            mlp_bias=True,
            hidden_act="gelu",
        ),
    ),
    # RoPE scalings; sequences of 40 run past the 16-token original context.
    "llama-rope-linear": (
        "LlamaConfig",
        dict(num_attention_heads=4, num_key_value_heads=2, rope_scaling={"rope_type": "linear", "factor": 4.0}),
    ),
    "llama-rope-dynamic": (
        "LlamaConfig",
        dict(
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=16,
            rope_scaling={"rope_type": "dynamic", "factor": 2.0},
        ),
    ),
    "llama-rope-yarn": (
        "LlamaConfig",
        dict(
            num_attention_heads=4,
            num_key_value_heads=2,
            rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16},
        ),
    ),
    "llama-rope-llama3": (
        "LlamaConfig",
        dict(
            num_attention_heads=4,
            num_key_value_heads=2,
            rope_theta=500000.0,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            },
        ),
    ),
    "mistral-sliding": ("MistralConfig", dict(num_attention_heads=4, num_key_value_heads=2, sliding_window=8)),
    "qwen2-bias": ("Qwen2Config", dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)),
    "qwen2-window-layers": (
        "Qwen2Config",
        dict(
            num_attention_heads=4, num_key_value_heads=2, use_sliding_window=True, sliding_window=8, max_window_layers=1
        ),
    ),
    "qwen3-qknorm": ("Qwen3Config", dict(num_attention_heads=4, num_key_value_heads=2, head_dim=32)),
    "mixtral": (
        "MixtralConfig",
        dict(
            num_attention_heads=4,
            num_key_value_heads=2,
            num_local_experts=4,
            num_experts_per_tok=2,
            sliding_window=None,
        ),
    ),
    "deepseek-v3": (
        "DeepseekV3Config",
        dict(
            num_attention_heads=4,
            num_key_value_heads=4,
            q_lora_rank=32,
            kv_lora_rank=16,
            qk_nope_head_dim=16,
            qk_rope_head_dim=8,
            v_head_dim=16,
            n_routed_experts=8,
            num_experts_per_tok=2,
            n_shared_experts=1,
            moe_intermediate_size=32,
            first_k_dense_replace=1,
            n_group=4,
            topk_group=2,
            routed_scaling_factor=2.5,
            num_mtp_layers=0,
        ),
    ),
    "deepseek-v3-yarn-no-qlora": (
        "DeepseekV3Config",
        dict(
            num_attention_heads=4,
            num_key_value_heads=4,
            q_lora_rank=None,
            kv_lora_rank=16,
            qk_nope_head_dim=16,
            qk_rope_head_dim=8,
            v_head_dim=16,
            n_routed_experts=4,
            num_experts_per_tok=2,
            n_shared_experts=2,
            moe_intermediate_size=32,
            first_k_dense_replace=0,
            n_group=1,
            topk_group=1,
            num_mtp_layers=0,
            rope_scaling={
                "rope_type": "yarn",
                "factor": 4.0,
                "original_max_position_embeddings": 16,
                "mscale": 1.0,
                "mscale_all_dim": 1.0,
                "beta_fast": 32,
                "beta_slow": 1,
            },
        ),
    ),
}


def build_hf_model(case: str) -> torch.nn.Module:
    config_class, fields = CASES[case]
    import transformers

    config = getattr(transformers, config_class)(**{**SMALL, **fields})
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    randomize(model)
    return model
