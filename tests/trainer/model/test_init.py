"""Each module initialises its own weights; together they give exactly the model-wide rule, drawn in the order of
`named_parameters()`: Normal(0, init_std) for matrices, init_std / sqrt(2 * n_layers) for the projections into the
residual stream (o_proj, down_proj), unit norm gains, zero biases and router balancing biases."""

from __future__ import annotations

import math

import pytest
import torch

from llm_platform.trainer.model import Transformer, get_config

VARIANTS = {
    "llama-tied": dict(preset="llama-tiny"),
    "qwen2-untied-bias": dict(preset="qwen2-tiny", tie_embeddings=False),
    "mixtral": dict(preset="mixtral-tiny"),
    "deepseek-mla-shared-experts": dict(preset="deepseek-tiny"),
    "deepseek-uncompressed-q": dict(preset="deepseek-tiny", q_lora_rank=0),
    "gpt2-like": dict(preset="llama-tiny", position_encoding="alibi", norm="layernorm", mlp="gelu", mlp_bias=True),
    "qk-norm-geglu": dict(preset="llama-tiny", qk_norm=True, mlp="geglu", qkv_bias=True, attn_out_bias=True),
}


def rule(model: Transformer, seed: int) -> dict[str, torch.Tensor]:
    """The model-wide rule applied to a copy of the parameters, one walk in `named_parameters()` order."""
    generator = torch.Generator().manual_seed(seed)
    std = model.config.init_std
    residual = std / math.sqrt(2 * model.config.n_layers)
    expected = {}
    for name, param in model.named_parameters():
        value = torch.empty_like(param)
        if param.dim() == 1:
            value.fill_(1.0 if name.endswith("weight") and "norm" in name else 0.0)
        else:
            is_residual = "o_proj" in name or "down_proj" in name
            torch.nn.init.normal_(value, 0.0, residual if is_residual else std, generator=generator)
        expected[name] = value
    return expected


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_per_module_init_equals_the_model_wide_rule(name):
    fields = dict(VARIANTS[name])
    model = Transformer(get_config(fields.pop("preset"), **fields))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(7.0)  # nothing may keep a value from before
    model.init_weights(seed=5)
    expected = rule(model, seed=5)
    for key, param in model.named_parameters():
        assert torch.equal(param, expected[key]), key
    for _, moe in model.moe_layers():
        assert torch.equal(moe.router.bias, torch.zeros_like(moe.router.bias))
    if model.config.tie_embeddings:
        assert model.lm_head.weight is model.embed_tokens.weight


def test_a_module_without_an_init_is_refused_by_name():
    model = Transformer(get_config("llama-tiny"))
    model.layers[0].extra = torch.nn.ModuleDict({"w": torch.nn.Conv1d(2, 2, 1)})  # weights, and no way to init them
    with pytest.raises(TypeError, match=r"Block\.extra \(ModuleDict\) has no init_weights"):
        model.init_weights(seed=0)
