"""Activation checkpointing is applied to the plain model from outside, per block, by the training side: it changes
what is kept for the backward pass, never the gradients."""

from __future__ import annotations

import pytest
import torch

from llm_platform.trainer.model import Transformer, get_config
from llm_platform.trainer.train.distributed import apply_activation_checkpointing

MODELS = {
    "llama": dict(preset="llama-tiny"),
    "deepseek": dict(preset="deepseek-tiny"),  # latent attention and MoE layers with their aux loss
}


def gradients(name: str, mode: str) -> dict[str, torch.Tensor]:
    fields = dict(MODELS[name])
    torch.manual_seed(0)
    model = Transformer(get_config(fields.pop("preset"), **fields)).train()
    apply_activation_checkpointing(model, mode)
    ids = torch.randint(0, model.config.vocab_size, (2, 10), generator=torch.Generator().manual_seed(1))
    (model(ids).square().mean() + model.aux_loss()).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("mode", ["full", "selective"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_checkpointed_blocks_give_the_same_gradients(name, mode):
    plain, checkpointed = gradients(name, "none"), gradients(name, mode)
    assert plain.keys() == checkpointed.keys() and len(plain) > 10
    for key in plain:
        torch.testing.assert_close(checkpointed[key], plain[key], rtol=0, atol=0, msg=key)


def test_checkpointing_keeps_the_parameter_names():
    torch.manual_seed(0)
    model = Transformer(get_config("llama-tiny"))
    names = [n for n, _ in model.named_parameters()]
    apply_activation_checkpointing(model, "full")
    assert [n for n, _ in model.named_parameters()] == names


def test_blocks_are_recomputed_in_the_backward_pass():
    torch.manual_seed(0)
    model = Transformer(get_config("llama-tiny")).train()
    calls = []
    model.layers[0].attn.register_forward_pre_hook(lambda *_: calls.append(1))
    apply_activation_checkpointing(model, "full")
    model(torch.randint(0, 100, (1, 8))).sum().backward()
    assert len(calls) == 2  # the forward, then its recomputation for the backward
