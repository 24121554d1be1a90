"""merge_lora folds adapters into plain linear layers: the merged export computes what the adapter model did."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from llm_platform.trainer.adapters import LoraConfig, apply_lora, merge_lora
from llm_platform.trainer.adapters.inject import adapter_modules
from llm_platform.trainer.model.hf import save_pretrained

from .reference import LOGITS_TOLERANCE, max_diff, our_model, randomize_adapters, token_batch

transformers = pytest.importorskip("transformers")

CONFIGS = {
    "lora": LoraConfig(rank=4, alpha=8, dropout=0.1, targets="all-linear"),
    "dora": LoraConfig(rank=4, alpha=8, dropout=0.1, targets=["q_proj", "k_proj", "up_proj", "lm_head"], dora=True),
}


@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_merged_export_matches_adapter_model(method, tmp_path):
    model = our_model()
    names = apply_lora(model, CONFIGS[method])
    randomize_adapters(model)
    ids = token_batch(model.config.vocab_size)
    with torch.no_grad():
        adapted = model(ids)
    assert merge_lora(model) == names
    assert not adapter_modules(model)
    assert all(type(model.get_submodule(name)) is nn.Linear for name in names)
    save_pretrained(model, tmp_path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        diff = max_diff(hf(ids).logits, adapted)
    print(f"{method}: max |transformers on merged export - unmerged adapters| = {diff:.2e}")
    assert diff <= LOGITS_TOLERANCE


def test_merge_keeps_bias_dtype_and_frozen_flag():
    model = our_model("llama-gqa").to(torch.bfloat16)
    model.layers[0].attn.q_proj.bias = nn.Parameter(torch.ones(model.layers[0].attn.q_proj.out_features))
    bias = model.layers[0].attn.q_proj.bias
    apply_lora(model, LoraConfig(rank=2, alpha=2, targets=["layers.0.attn.q_proj"], dora=True))
    merge_lora(model)
    merged = model.layers[0].attn.q_proj
    assert merged.bias is bias
    assert merged.weight.dtype == torch.bfloat16
    assert not merged.weight.requires_grad
