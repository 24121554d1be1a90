"""ModelConfig, presets, overrides, and parameter/FLOP counting."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from llm_platform.trainer.model import PRESETS, ModelConfig, Transformer, flops_per_token, get_config, num_params


def test_config_package_imports_without_torch():
    code = "import sys; from llm_platform.trainer.model import get_config, ModelConfig; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_llama_tiny_is_tiny():
    c = get_config("llama-tiny")
    assert c.dim <= 128 and c.n_layers == 2 and c.n_heads == 4 and c.num_kv_heads == 2


def test_get_config_applies_overrides_without_touching_the_preset():
    c = get_config("llama-125m", num_kv_heads=4, vocab_size=1000)
    assert (c.num_kv_heads, c.vocab_size) == (4, 1000)
    assert PRESETS["llama-125m"].num_kv_heads == 12


def test_overrides_of_nested_fields_are_copied():
    c = get_config("llama-1b")
    c.rope_scaling["factor"] = 1.0
    assert PRESETS["llama-1b"].rope_scaling["factor"] == 32.0


def test_unknown_preset_names_it_and_lists_choices():
    with pytest.raises(ValueError, match=r"'llama-9000'.*llama-tiny"):
        get_config("llama-9000")


def test_unknown_override_names_it_and_lists_fields():
    with pytest.raises(ValueError, match=r"unknown model override\(s\) hidden;.*num_kv_heads"):
        get_config("llama-tiny", hidden=3)


def test_invalid_value_names_the_field():
    with pytest.raises(ValueError, match=r"num_kv_heads.*multiple"):
        get_config("llama-tiny", num_kv_heads=3)
    with pytest.raises(ValueError, match=r"ModelConfig.mlp"):
        get_config("llama-tiny", mlp="swish")
    with pytest.raises(ValueError, match=r"rope_scaling.*'ntk'"):
        get_config("llama-tiny", rope_scaling={"type": "ntk", "factor": 2.0})


def test_every_string_setting_is_a_literal_whose_choices_the_check_and_the_spec_both_read():
    from typing import get_type_hints

    from llm_platform.api.overrides import override_problems
    from llm_platform.trainer.model.config_checks import choice_fields

    hints = get_type_hints(ModelConfig)
    assert [name for name, hint in hints.items() if hint is str] == []  # a free-form string setting would need a reason
    choices = choice_fields(ModelConfig)
    assert choices["mlp"] == ("swiglu", "geglu", "geglu_tanh", "reglu", "gelu")
    assert set(choices) == {
        "norm",
        "mlp",
        "position_encoding",
        "attention",
        "router_score",
        "attn_impl",
        "kernels",
        "residual_dtype",
    }
    for name, allowed in choices.items():
        _, problems = override_problems({name: "nonsense"}, "llama-tiny")
        assert [p.loc for p in problems] == [("spec", "model", "overrides", name)]
        assert all(repr(choice) in problems[0].message for choice in allowed), problems[0].message


def test_overriding_dim_rederives_head_size():
    assert get_config("llama-tiny", dim=256).head_size == 64


def test_dict_roundtrip_and_unknown_keys():
    c = get_config("deepseek-tiny")
    assert ModelConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        ModelConfig.from_dict({**c.to_dict(), "colour": "red"})


def test_overrides_are_dataclass_fields():
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    assert {"vocab_size", "dim", "n_layers", "n_heads", "num_kv_heads", "max_seq_len", "tie_embeddings"} <= names


@pytest.mark.parametrize("preset", ["llama-tiny", "mistral-tiny", "qwen2-tiny", "mixtral-tiny", "deepseek-tiny"])
def test_num_params_matches_the_module(preset):
    c = get_config(preset)
    with torch.device("meta"):
        model = Transformer(c)
    assert num_params(c) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "overrides",
    [dict(norm="layernorm", mlp="gelu", mlp_bias=True), dict(qkv_bias=True, attn_out_bias=True, qk_norm=True)],
)
def test_num_params_matches_the_module_for_variants(overrides):
    c = get_config("llama-tiny", tie_embeddings=False, **overrides)
    with torch.device("meta"):
        model = Transformer(c)
    assert num_params(c) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "preset, published",
    [
        ("llama-7b", 6_738_415_616),  # Llama 2 7B
        ("llama-1b", 1_235_814_400),  # Llama 3.2 1B
        ("llama3-8b", 8_030_261_248),  # Llama 3 8B
        ("mistral-7b", 7_241_732_096),  # Mistral 7B v0.1
        ("mixtral-8x7b", 46_702_792_704),  # Mixtral 8x7B
    ],
)
def test_num_params_of_published_models(preset, published):
    assert num_params(get_config(preset)) == published


def test_deepseek_v3_total_and_active_params():
    c = get_config("deepseek-v3")  # published: 671B total, 37B activated (without the MTP module)
    assert abs(num_params(c) / 671e9 - 1) < 0.005
    assert abs(num_params(c, active=True) / 37e9 - 1) < 0.03


def test_flops_per_token_is_six_n_plus_attention():
    c = get_config("llama-7b")
    n = num_params(c, embeddings=False)
    attention = 12 * c.n_layers * c.n_heads * c.head_size * 4096
    assert flops_per_token(c, 4096) == 6 * n + attention


def test_flops_per_token_caps_attention_at_the_window():
    c = get_config("mistral-7b")
    assert flops_per_token(c, 32768) == flops_per_token(c, 4096)
