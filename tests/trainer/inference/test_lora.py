"""Several PEFT adapters over one base: each request's tokens equal those of its adapter merged into the base."""

from __future__ import annotations

import copy

import pytest
import torch

from llm_platform.trainer.adapters import LoraConfig, apply_lora, merge_lora
from llm_platform.trainer.adapters.peft_format import save_peft_adapter
from llm_platform.trainer.inference import EngineConfig, InvalidRequest, LLMEngine, SamplingParams

from .conftest import tiny_model

GREEDY = SamplingParams(max_tokens=10, temperature=0, ignore_eos=True)
PROMPTS = [[5, 17, 42, 7], list(range(1, 30)), [9] * 13]


def _adapted(base, targets, seed: int):
    model = copy.deepcopy(base)
    apply_lora(model, LoraConfig(rank=4, alpha=8, targets=targets))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return model


def _greedy(model, prompts):
    engine = LLMEngine(model, None, EngineConfig(block_size=4))
    return [o.outputs[0].token_ids for o in engine.generate(prompts, GREEDY)]


def test_requests_on_different_adapters_equal_their_merged_models(tmp_path):
    base = tiny_model()
    adapters = {"attn": _adapted(base, ["q_proj", "v_proj"], 1), "mlp": _adapted(base, "all-linear", 2)}
    folders = {}
    for name, model in adapters.items():
        folders[name] = str(tmp_path / name)
        save_peft_adapter(model, folders[name], base_model="tiny")
    expected = {None: _greedy(base, PROMPTS)}
    for name, model in adapters.items():
        merge_lora(model)
        expected[name] = _greedy(model, PROMPTS)
    assert expected["attn"] != expected[None] and expected["mlp"] != expected[None]

    engine = LLMEngine(copy.deepcopy(base), None, EngineConfig(block_size=4), adapters=folders)
    order = [(adapter, i) for i in range(len(PROMPTS)) for adapter in (None, "attn", "mlp")]
    for adapter, i in order:  # one batch mixing all three
        engine.add_request(f"{adapter}-{i}", PROMPTS[i], GREEDY, adapter)
    got = {}
    while engine.has_unfinished_requests():
        got |= {o.request_id: o.outputs[0].token_ids for o in engine.step() if o.finished}
    for adapter, i in order:
        assert got[f"{adapter}-{i}"] == expected[adapter][i]
    with pytest.raises(InvalidRequest, match="adapter"):
        engine.add_request("x", PROMPTS[0], GREEDY, "unknown")
