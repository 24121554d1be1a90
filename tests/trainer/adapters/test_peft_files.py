"""PEFT adapter folders: ours load in peft with our logits, peft's load in ours with peft's logits."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from llm_platform.trainer.adapters import LoraConfig, apply_lora, load_peft_adapter, save_peft_adapter
from llm_platform.trainer.adapters.inject import adapter_modules
from llm_platform.trainer.model.hf import load_pretrained, save_pretrained

from .reference import LOGITS_TOLERANCE, max_diff, our_model, peft_config, randomize_adapters, token_batch

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

OUR_ADAPTERS = {
    "lora-subset": ("llama-gqa", LoraConfig(rank=4, alpha=16, dropout=0.05, targets=["q_proj", "v_proj", "lm_head"])),
    "dora-all-linear": ("llama-gqa", LoraConfig(rank=8, alpha=8, targets="all-linear", dora=True)),
    "mla-lora-attention": ("deepseek-mla", LoraConfig(rank=4, alpha=8, targets=["q_b_proj", "kv_a_proj", "o_proj"])),
}
PEFT_ADAPTERS = {
    "lora-suffixes": ("llama-gqa", LoraConfig(rank=4, alpha=8, targets=["q_proj", "v_proj", "gate_proj"])),
    "dora-all-linear": ("llama-gqa", LoraConfig(rank=4, alpha=4, targets="all-linear", dora=True)),
    "mla-dora-attention": ("deepseek-mla", LoraConfig(rank=4, alpha=8, targets=["q_b_proj", "kv_a_proj_with_mqa"])),
}


def _hf_base(folder, model):
    save_pretrained(model, folder)
    return transformers.AutoModelForCausalLM.from_pretrained(folder).eval()


@pytest.mark.parametrize("case", sorted(OUR_ADAPTERS))
def test_our_adapter_loads_in_peft(case, tmp_path):
    kind, config = OUR_ADAPTERS[case]
    model = our_model(kind)
    hf = _hf_base(tmp_path / "base", model)
    apply_lora(model, config)
    randomize_adapters(model)
    save_peft_adapter(model, tmp_path / "adapter", base_model=str(tmp_path / "base"))
    loaded = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
    ids = token_batch(model.config.vocab_size)
    with torch.no_grad():
        diff = max_diff(model(ids), loaded(ids).logits)
    print(f"{case}: max |logits ours - peft loading our folder| = {diff:.2e}")
    assert diff <= LOGITS_TOLERANCE


def test_our_folder_is_what_peft_writes(tmp_path):
    """peft re-saving the adapter it loaded from our folder writes the same tensor names and the same settings."""
    model = our_model()
    hf = _hf_base(tmp_path / "base", model)
    apply_lora(model, LoraConfig(rank=4, alpha=8, targets="all-linear", dora=True))
    save_peft_adapter(model, tmp_path / "ours", base_model=str(tmp_path / "base"))
    peft.PeftModel.from_pretrained(hf, tmp_path / "ours").save_pretrained(tmp_path / "theirs")
    ours_tensors, theirs_tensors = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("ours", "theirs"))
    assert sorted(ours_tensors) == sorted(theirs_tensors)
    assert all(torch.equal(ours_tensors[k], theirs_tensors[k]) for k in ours_tensors)
    ours_config, theirs_config = (_settings(tmp_path / d) for d in ("ours", "theirs"))
    assert {field: theirs_config[field] for field in ours_config} == ours_config
    assert ours_config["base_model_name_or_path"] == str(tmp_path / "base")
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]


def _settings(folder) -> dict:
    config = json.loads((folder / "adapter_config.json").read_text())
    return {**config, "target_modules": sorted(config["target_modules"])}


@pytest.mark.parametrize("case", sorted(PEFT_ADAPTERS))
def test_peft_adapter_loads_in_ours(case, tmp_path):
    kind, config = PEFT_ADAPTERS[case]
    hf = _hf_base(tmp_path / "base", our_model(kind))
    trained = peft.get_peft_model(hf, peft_config(config))
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in trained.named_parameters():
            if "lora_" in name:  # non-zero B, magnitudes off the base norms
                param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    trained.eval().save_pretrained(tmp_path / "adapter")
    model = load_pretrained(tmp_path / "base").eval()
    names = load_peft_adapter(model, tmp_path / "adapter")
    assert len(names) == len(adapter_modules(model)) > 0
    ids = token_batch(model.config.vocab_size)
    with torch.no_grad():
        diff = max_diff(model(ids), trained(ids).logits)
    print(f"{case}: max |logits ours loading peft's folder - peft| = {diff:.2e}")
    assert diff <= LOGITS_TOLERANCE


def test_loaded_adapters_train_and_base_stays_frozen(tmp_path):
    model = our_model()
    apply_lora(model, LoraConfig(rank=4, alpha=8, targets=["q_proj"]))
    save_peft_adapter(model, tmp_path, base_model="base")
    fresh = our_model()
    load_peft_adapter(fresh, tmp_path)
    trained = {name for name, p in fresh.named_parameters() if p.requires_grad}
    assert trained == {f"layers.{i}.attn.q_proj.lora_{ab}.weight" for i in range(2) for ab in "AB"}


def _saved_adapter(folder, **config_changes):
    model = our_model()
    apply_lora(model, LoraConfig(rank=4, alpha=8, targets=["q_proj"]))
    save_peft_adapter(model, folder, base_model="base")
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, **config_changes}))
    return folder


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"use_rslora": True}, "use_rslora=True is not supported"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
        ({"peft_type": "IA3"}, "peft_type 'IA3' is not supported"),
        ({"r": 8}, r"lora_A has shape \(4, 128\), the model needs \(8, 128\)"),
    ],
)
def test_adapters_we_cannot_run_are_refused(tmp_path, change, message):
    folder = _saved_adapter(tmp_path, **change)
    with pytest.raises(ValueError, match=message):
        load_peft_adapter(our_model(), folder)


def test_folder_without_adapter_files_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no adapter_model.safetensors"):
        load_peft_adapter(our_model(), tmp_path)


def test_auto_peft_model_finds_the_base_through_the_adapter_config_and_files_are_0644(tmp_path):
    kind, config = OUR_ADAPTERS["lora-subset"]
    model = our_model(kind)
    save_pretrained(model, tmp_path / "base")
    apply_lora(model, config)
    randomize_adapters(model)
    save_peft_adapter(model, tmp_path / "adapter", base_model=str(tmp_path / "base"))
    loaded = peft.AutoPeftModelForCausalLM.from_pretrained(tmp_path / "adapter").eval()  # no base model given
    ids = token_batch(model.config.vocab_size)
    with torch.no_grad():
        assert max_diff(model(ids), loaded(ids).logits) <= LOGITS_TOLERANCE
    for path in [*(tmp_path / "base").iterdir(), *(tmp_path / "adapter").iterdir()]:
        assert path.stat().st_mode & 0o777 == 0o644, path.name
