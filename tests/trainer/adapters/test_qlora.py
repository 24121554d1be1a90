"""QLoRA: LoRA/DoRA over an NF4 base computes, and trains, what LoRA over the dequantised base does."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from llm_platform.trainer.adapters import (
    LoraConfig,
    NF4Linear,
    apply_lora,
    dequantize_base,
    merge_lora,
    quantize_base,
)
from llm_platform.trainer.adapters.inject import adapter_modules

from .reference import next_token_loss, our_model, randomize_adapters, token_batch

CONFIGS = {
    "lora": LoraConfig(rank=4, alpha=8, targets="all-linear"),
    "dora": LoraConfig(rank=4, alpha=8, targets=["q_proj", "v_proj", "down_proj"], dora=True),
}
# fp32 compute: the two paths differ only in summation order. bf16 compute: both round the same bf16 weights, but the
# QLoRA base runs its matmuls in bf16 where the reference keeps fp32 activations.
TOLERANCE = {torch.float32: (1e-5, 1e-4), torch.bfloat16: (3e-2, 1e-1)}  # (loss, gradient relative to its max)


def twins(method: str, compute_dtype: torch.dtype) -> tuple[nn.Module, nn.Module]:
    """(QLoRA model, LoRA model over the dequantised base), holding the same adapter weights."""
    qlora = our_model()
    quantize_base(qlora, compute_dtype)
    reference = copy.deepcopy(qlora)
    dequantize_base(reference)
    if compute_dtype != torch.float32:
        for module in reference.modules():
            if type(module) is nn.Linear and module is not reference.lm_head:
                module.weight.data = module.weight.data.to(compute_dtype).float()
    for model in (qlora, reference):
        apply_lora(model, CONFIGS[method])
        randomize_adapters(model)
    return qlora, reference


@pytest.mark.parametrize("compute_dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_a_qlora_step_matches_lora_over_the_dequantised_base(method, compute_dtype):
    qlora, reference = twins(method, compute_dtype)
    ids = token_batch(qlora.config.vocab_size)
    losses, grads = [], []
    for model in (qlora, reference):
        model.train()
        loss = next_token_loss(model(ids), ids)
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    loss_tol, grad_tol = TOLERANCE[compute_dtype]
    print(f"{method} {compute_dtype}: loss {losses[0]:.6f} vs {losses[1]:.6f}")
    assert abs(losses[0] - losses[1]) <= loss_tol * abs(losses[1])
    assert grads[0].keys() == grads[1].keys() and all("lora_" in n for n in grads[0])
    for name, grad in grads[0].items():
        other = grads[1][name]
        assert (grad - other).abs().max() <= grad_tol * other.abs().max(), name


def test_the_base_is_4_bit_frozen_and_only_adapters_train():
    model = our_model()
    dense_bytes = sum(m.weight.numel() * 4 for m in model.modules() if type(m) is nn.Linear) - (
        model.lm_head.weight.numel() * 4
    )
    names = quantize_base(model, torch.float32)
    assert names and "lm_head" not in names and type(model.lm_head) is nn.Linear
    nf4_bytes = sum(sum(b.numel() * b.element_size() for b in m.buffers()) for m in model.modules()
                    if isinstance(m, NF4Linear))  # fmt: skip
    assert nf4_bytes < dense_bytes / 7  # 4.13 of 32 bits
    apply_lora(model, CONFIGS["lora"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert "qlora" in repr(next(iter(adapter_modules(model).values())))


def test_merging_and_dequantising_gives_a_plain_model_that_computes_the_same():
    model = our_model()
    quantize_base(model, torch.float32)
    apply_lora(model, CONFIGS["dora"])
    randomize_adapters(model)
    ids = token_batch(model.config.vocab_size)
    with torch.no_grad():
        before = model(ids)
        merge_lora(model)
        dequantize_base(model)
        after = model(ids)
    assert not any(isinstance(m, NF4Linear) for m in model.modules())
    assert all(not p.requires_grad for p in model.parameters() if p.dim() == 2 and p is not model.lm_head.weight)
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    assert set(model.state_dict()) == set(our_model().state_dict())
