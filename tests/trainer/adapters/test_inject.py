"""apply_lora: which layers it adapts, what it freezes, where training starts, and what it refuses."""

from __future__ import annotations

import math

import pytest
import torch

from llm_platform.trainer.adapters import LoraConfig, LoraLinear, apply_lora, trainable_parameters
from llm_platform.trainer.adapters.inject import adapter_modules
from llm_platform.trainer.model import Transformer, get_config

from .reference import next_token_loss, our_model, token_batch

LINEAR_LEAVES = "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj"


def test_all_linear_is_every_linear_layer_but_the_head():
    names = apply_lora(our_model(), LoraConfig(rank=2, alpha=2, targets="all-linear"))
    projections = ["attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.o_proj"]
    projections += ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    assert names == [f"layers.{i}.{p}" for i in range(2) for p in projections]


def test_moe_all_linear_leaves_routers_and_experts_alone():
    """Routed experts and routers are stacked parameters, not linear layers (here and in transformers 5)."""
    model = Transformer(get_config("deepseek-tiny"))
    names = apply_lora(model, LoraConfig(rank=2, alpha=2, targets="all-linear"))
    assert "layers.1.mlp.shared_experts.gate_proj" in names
    assert not [n for n in names if "router" in n or ".experts." in n]


def test_targets_are_suffixes_in_either_naming():
    names = apply_lora(our_model(), LoraConfig(rank=2, alpha=2, targets=["self_attn.q_proj", "layers.1.mlp.up_proj"]))
    assert names == ["layers.0.attn.q_proj", "layers.1.attn.q_proj", "layers.1.mlp.up_proj"]


def test_unknown_target_is_named_with_the_available_names():
    with pytest.raises(ValueError, match=f"'qkv_proj' matches no linear layer.*available names: {LINEAR_LEAVES}"):
        apply_lora(our_model(), LoraConfig(rank=2, alpha=2, targets=["q_proj", "qkv_proj"]))


def test_tied_head_is_refused():
    model = Transformer(get_config("llama-tiny"))  # tie_embeddings=True
    with pytest.raises(ValueError, match="lm_head shares its weight with embed_tokens"):
        apply_lora(model, LoraConfig(rank=2, alpha=2, targets=["lm_head"]))


def test_a_second_apply_adds_a_named_adapter_and_a_repeated_name_is_refused():
    model = our_model()
    apply_lora(model, LoraConfig(rank=2, alpha=2, targets=["q_proj"]))
    with pytest.raises(ValueError, match="already has an adapter named 'default'"):
        apply_lora(model, LoraConfig(rank=2, alpha=2, targets=["v_proj"]))
    assert apply_lora(model, LoraConfig(rank=2, alpha=2, targets=["q_proj", "v_proj"]), name="second")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n.split(".")[-2] for n in trainable} == {"lora_A", "lora_B"}
    assert any(".v_proj." in n for n in trainable)  # the installed (second) adapter trains, alone


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rank": 0}, "LoraConfig.rank"),
        ({"alpha": 0}, "LoraConfig.alpha"),
        ({"dropout": 1.0}, "LoraConfig.dropout"),
        ({"targets": "q_proj"}, "LoraConfig.targets: 'q_proj' is neither"),
        ({"targets": []}, "LoraConfig.targets: give at least one"),
    ],
)
def test_bad_config_names_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        LoraConfig(**{"rank": 4, "alpha": 8, **fields})


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_only_adapters_train(dora):
    model = our_model()
    apply_lora(model, LoraConfig(rank=4, alpha=8, targets="all-linear", dora=dora))
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    kinds = {name.rsplit(".", 2)[-2] if name.endswith(".weight") else name.rsplit(".", 1)[-1] for name in trainable}
    assert kinds == ({"lora_A", "lora_B", "lora_magnitude_vector"} if dora else {"lora_A", "lora_B"})
    adapters = adapter_modules(model).values()
    expected = sum(4 * (m.in_features + m.out_features) + (m.out_features if dora else 0) for m in adapters)
    assert trainable_parameters(model) == (expected, sum(p.numel() for p in model.parameters()))


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_fresh_adapters_start_from_the_base_model(dora):
    model = our_model()
    ids = token_batch(model.config.vocab_size)
    with torch.no_grad():
        before = model(ids)
        apply_lora(model, LoraConfig(rank=4, alpha=8, targets="all-linear", dora=dora))
        after = model(ids)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)
    for adapter in adapter_modules(model).values():
        assert not adapter.lora_B.weight.any()
        bound = 1 / math.sqrt(adapter.in_features)  # kaiming-uniform with a = sqrt(5), as nn.Linear's default
        assert 0 < adapter.lora_A.weight.abs().max() <= bound
        if dora:
            torch.testing.assert_close(adapter.lora_magnitude_vector, adapter.weight.norm(dim=1))


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_training_moves_adapters_and_not_the_base(dora):
    model = our_model().train()
    apply_lora(model, LoraConfig(rank=4, alpha=8, dropout=0.1, targets="all-linear", dora=dora))
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = token_batch(model.config.vocab_size, batch=4, seq=16)
    torch.manual_seed(0)
    losses = []
    for _ in range(8):
        loss = next_token_loss(model(ids), ids)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses
    assert all(torch.equal(p, frozen[name]) for name, p in model.named_parameters() if name in frozen)
    assert all(p.grad is None for name, p in model.named_parameters() if name in frozen)


def test_adapters_follow_the_base_device_and_keep_fp32_over_bf16():
    model = our_model().to(torch.bfloat16)
    apply_lora(model, LoraConfig(rank=2, alpha=2, targets=["q_proj"], dora=True))
    adapter = model.layers[0].attn.q_proj
    assert isinstance(adapter, LoraLinear)
    assert adapter.weight.dtype == torch.bfloat16
    assert {adapter.lora_A.weight.dtype, adapter.lora_magnitude_vector.dtype} == {torch.float32}
    logits = model(token_batch(model.config.vocab_size))
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
