"""Adapter models under bf16 autocast and torch.compile (no graph breaks in the adapter forward), on CPU."""

from __future__ import annotations

import functools

import pytest
import torch

from llm_platform.trainer.adapters import LoraConfig, apply_lora
from llm_platform.trainer.adapters.inject import adapter_modules
from llm_platform.trainer.model import Transformer, get_config

from .reference import next_token_loss, randomize_adapters, token_batch


@functools.cache
def inductor_problem() -> str | None:
    """Why inductor cannot compile here (no C++ compiler, ...), or None when a trivial function compiles."""
    try:
        torch.compile(lambda x: x * 2 + 1, backend="inductor", fullgraph=True)(torch.ones(4))
    except Exception as error:  # any failure of the toolchain, not of our code
        return f"{type(error).__name__}: {error}"
    return None


def _adapted(dora: bool, n_layers: int = 2, dropout: float = 0.0) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(get_config("llama-tiny", n_layers=n_layers))
    apply_lora(model, LoraConfig(rank=4, alpha=8, dropout=dropout, targets="all-linear", dora=dora))
    randomize_adapters(model)
    return model


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_bf16_autocast_forward_and_backward(dora):
    model = _adapted(dora).eval()
    ids = token_batch(model.config.vocab_size)
    with torch.no_grad():
        reference = model(ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(ids)
        loss = next_token_loss(logits.float(), ids)
    loss.backward()
    assert logits.dtype == torch.bfloat16
    assert (logits.float() - reference).abs().max() < 0.05 * reference.abs().max()
    grads = [p.grad for m in adapter_modules(model).values() for p in m.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_training_step_traces_as_one_graph(dora):
    """fullgraph=True raises on any graph break; aot_eager traces forward and backward without a C++ toolchain."""
    model = _adapted(dora, n_layers=1, dropout=0.1).train()
    ids = token_batch(model.config.vocab_size)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    next_token_loss(compiled(ids), ids).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.slow
def test_inductor_compiles_the_adapter_forward():
    problem = inductor_problem()
    if problem:
        pytest.skip(f"inductor cannot compile on this machine: {problem}")
    model = _adapted(dora=True, n_layers=1).eval()
    ids = token_batch(model.config.vocab_size)
    with torch.no_grad():
        compiled = torch.compile(model, fullgraph=True)(ids)
        eager = model(ids)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
