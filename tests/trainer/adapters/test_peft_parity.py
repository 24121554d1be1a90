"""Our LoRA/DoRA adapters compute what peft's compute on the same transformers model: logits and adapter gradients."""

from __future__ import annotations

import pytest
import torch

from llm_platform.trainer.adapters import LoraConfig, apply_lora
from llm_platform.trainer.adapters.inject import adapter_modules
from llm_platform.trainer.adapters.naming import hf_module_name, hf_row_order

from .reference import (
    LOGITS_TOLERANCE,
    hf_twin,
    max_diff,
    next_token_loss,
    our_model,
    peft_twin,
    randomize_adapters,
    token_batch,
)

pytest.importorskip("transformers")
pytest.importorskip("peft")

SUBSET = ["q_proj", "v_proj", "down_proj", "lm_head"]
MLA_ATTENTION = ["q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"]
CASES = {
    "lora-all-linear": ("llama-gqa", "all-linear", False),
    "lora-subset": ("llama-gqa", SUBSET, False),
    "dora-all-linear": ("llama-gqa", "all-linear", True),
    "dora-subset": ("llama-gqa", SUBSET, True),
    # MLA: the adapters on q_b_proj and kv_a_proj carry the RoPE row permutation of their base weights. Attention
    # only, by Hugging Face names: peft (0.21, transformers 5) reads gate/up/down_proj on DeepSeek as routed experts.
    "mla-dora-attention": ("deepseek-mla", MLA_ATTENTION, True),
}
GRAD_TOLERANCE = 1e-5


@pytest.fixture(scope="module", params=sorted(CASES))
def twins(request, tmp_path_factory):
    kind, targets, dora = CASES[request.param]
    model = our_model(kind)
    hf = hf_twin(model, tmp_path_factory.mktemp(request.param))
    config = LoraConfig(rank=4, alpha=8, targets=targets, dora=dora)
    apply_lora(model, config)
    randomize_adapters(model)
    return request.param, model, peft_twin(hf, model, config)


def test_peft_adapts_the_same_layers(twins):
    _, model, twin = twins
    from peft.tuners.lora import LoraLayer

    theirs = {name.removeprefix("base_model.model.") for name, m in twin.named_modules() if isinstance(m, LoraLayer)}
    ours = {hf_module_name(name, model.config) for name in adapter_modules(model)}
    assert ours == theirs


def test_logits_match_peft(twins):
    case, model, twin = twins
    ids = token_batch(model.config.vocab_size)
    with torch.no_grad():
        diff = max_diff(model(ids), twin(ids).logits)
    print(f"{case}: max |logits ours - peft| = {diff:.2e}")
    assert diff <= LOGITS_TOLERANCE


def test_adapter_gradients_match_peft(twins):
    case, model, twin = twins
    ids = token_batch(model.config.vocab_size)
    model.zero_grad()
    twin.zero_grad()
    next_token_loss(model(ids), ids).backward()
    next_token_loss(twin(ids).logits, ids).backward()
    worst = 0.0
    for name, adapter in adapter_modules(model).items():
        theirs = twin.base_model.model.get_submodule(hf_module_name(name, model.config))
        pairs = [(adapter.lora_A.weight, theirs.lora_A["default"].weight)]
        pairs.append((adapter.lora_B.weight, theirs.lora_B["default"].weight))
        if adapter.dora:
            pairs.append((adapter.lora_magnitude_vector, theirs.lora_magnitude_vector["default"].weight))
        rows = hf_row_order(name, model.config, adapter.out_features, to_hf=True)  # MLA query/kv_a rows
        for ours, peft_param in pairs:
            assert ours.grad is not None and peft_param.grad is not None, name
            grad = ours.grad if rows is None or ours is adapter.lora_A.weight else ours.grad[rows]
            worst = max(worst, max_diff(grad, peft_param.grad))
    print(f"{case}: max |adapter grad ours - peft| = {worst:.2e}")
    assert worst <= GRAD_TOLERANCE
