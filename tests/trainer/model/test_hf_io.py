"""Our models exported to Hugging Face format load in transformers unchanged; the loader's edges."""

from __future__ import annotations

import json

import pytest
import torch

from llm_platform.trainer.model import Transformer, get_config
from llm_platform.trainer.model.hf import load_pretrained, save_pretrained, state_dict_from_hf
from llm_platform.trainer.model.hf_config import UnsupportedCheckpoint, config_from_hf

from .hf_parity import TOLERANCE, build_hf_model, randomize

transformers = pytest.importorskip("transformers")

EXPORTS = {
    "llama-tiny": ("llama-tiny", {}),
    "mistral-tiny": ("mistral-tiny", {"sliding_window": 8}),
    "qwen2-tiny": ("qwen2-tiny", {}),
    "window-on-some-layers-as-qwen2": ("llama-tiny", {"sliding_window": 8, "sliding_window_layers": [1]}),
    "mixtral-tiny": ("mixtral-tiny", {}),
    "deepseek-tiny": ("deepseek-tiny", {}),
    "mla-without-experts": ("deepseek-tiny", {"n_experts": 0}),
}


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_our_model_exports_to_transformers(name, tmp_path):
    preset, overrides = EXPORTS[name]
    model = Transformer(get_config(preset, **overrides)).eval()
    randomize(model)  # random norms, biases and DeepSeek balancing biases too
    if model.config.router_score == "softmax":
        for _, moe in model.moe_layers():
            moe.router.bias.zero_()  # Mixtral has no balancing bias (a nonzero one refuses to export: tested below)
    save_pretrained(model, tmp_path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (hf(ids).logits - model(ids)).abs().max().item()
        assert diff <= TOLERANCE
        # and back through our loader: the same architecture and logits (a dense MLA model included)
        again = load_pretrained(tmp_path).eval()
        assert (again.config.n_experts, again.config.n_layers) == (model.config.n_experts, model.config.n_layers)
        assert (again(ids) - model(ids)).abs().max().item() <= TOLERANCE


def test_loader_ignores_other_files_and_reads_shards(tmp_path):
    config = transformers.LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4
    )
    hf = transformers.LlamaForCausalLM(config).eval()
    hf.save_pretrained(tmp_path, max_shard_size="40KB")
    (tmp_path / "tokenizer.json").write_text("{}")
    assert (tmp_path / "model.safetensors.index.json").exists()
    ids = torch.randint(0, 128, (1, 10))
    with torch.no_grad():
        torch.testing.assert_close(load_pretrained(tmp_path)(ids), hf(ids).logits)


def test_save_leaves_other_files_alone(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"keep": true}')
    save_pretrained(Transformer(get_config("llama-tiny")), tmp_path)
    assert json.loads((tmp_path / "tokenizer.json").read_text()) == {"keep": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]


def test_load_in_bf16(tmp_path):
    save_pretrained(Transformer(get_config("mixtral-tiny")), tmp_path)
    model = load_pretrained(tmp_path, dtype=torch.bfloat16)
    assert model.embed_tokens.weight.dtype == torch.bfloat16
    assert model.layers[0].mlp.router.weight.dtype == torch.float32  # routers stay in float32


def test_features_without_an_hf_equivalent_refuse_to_export(tmp_path):
    with pytest.raises(UnsupportedCheckpoint, match="position_encoding='alibi'"):
        save_pretrained(Transformer(get_config("llama-tiny", position_encoding="alibi")), tmp_path)
    with pytest.raises(UnsupportedCheckpoint, match="qk_norm"):
        save_pretrained(Transformer(get_config("mixtral-tiny", qk_norm=True)), tmp_path)
    mixtral = Transformer(get_config("mixtral-tiny"))
    mixtral.layers[1].mlp.router.bias.fill_(0.1)
    with pytest.raises(UnsupportedCheckpoint, match="balancing bias"):
        save_pretrained(mixtral, tmp_path)
    assert not (tmp_path / "config.json").exists()


def test_unsupported_checkpoint_names_the_model_type():
    with pytest.raises(UnsupportedCheckpoint, match="'gpt2'.*llama"):
        config_from_hf({"model_type": "gpt2"})


def test_missing_config_says_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained(tmp_path)


def test_checkpoint_config_maps_to_preset_fields():
    hf = {  # Llama 3.2 1B's config.json, abridged
        "model_type": "llama", "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
        "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
        "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": True,
        "hidden_act": "silu",
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    }  # fmt: skip
    assert config_from_hf(hf) == get_config("llama-1b")


@pytest.mark.parametrize("case", ["mixtral", "deepseek-v3"])
def test_fused_expert_layout_of_transformers_5_loads(case):
    hf = build_hf_model(case).eval()
    fused = hf.state_dict()  # in memory, transformers 5 stacks experts into gate_up_proj / down_proj
    assert any(name.endswith("experts.gate_up_proj") for name in fused)
    config = config_from_hf(hf.config.to_dict())
    model = Transformer(config).eval()
    missing, unexpected = model.load_state_dict(state_dict_from_hf(iter(fused.items()), config), strict=False)
    assert not unexpected and all(name.endswith("router.bias") for name in missing)  # Mixtral has no such bias
    ids = torch.randint(0, config.vocab_size, (1, 16))
    with torch.no_grad():
        assert (model(ids) - hf(ids).logits).abs().max().item() <= TOLERANCE


def test_quantized_checkpoints_are_refused_with_a_reason():
    with pytest.raises(UnsupportedCheckpoint, match="fp8"):
        config_from_hf({"model_type": "deepseek_v3", "quantization_config": {"quant_method": "fp8"}})
