"""The decoder as a whole: shapes, causality, init, torch.compile, learning (activation checkpointing is the
training side's: tests/trainer/train/test_activation_checkpointing.py)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from llm_platform.trainer.model import Transformer, get_config

VARIANTS = {
    "llama": dict(preset="llama-tiny"),
    "mistral": dict(preset="mistral-tiny", sliding_window=4),
    "mixtral": dict(preset="mixtral-tiny"),
    "deepseek": dict(preset="deepseek-tiny"),
    "alibi-layernorm-gelu": dict(preset="llama-tiny", position_encoding="alibi", norm="layernorm", mlp="gelu"),
    "qknorm-geglu-bias": dict(preset="llama-tiny", qk_norm=True, mlp="geglu", qkv_bias=True, attn_out_bias=True),
}


def build(name: str, **extra) -> Transformer:
    fields = {**VARIANTS[name], **extra}
    config = get_config(fields.pop("preset"), **fields)
    torch.manual_seed(0)
    return Transformer(config)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_future_tokens_do_not_change_past_logits(name):
    model = build(name).eval()
    ids = torch.randint(0, 512, (2, 12))
    changed = ids.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 512
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert a.shape == (2, 12, 512)
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])


@pytest.mark.parametrize("name", ["llama", "deepseek"])
def test_a_few_steps_fit_a_batch(name):
    model = build(name)
    ids = torch.randint(0, 512, (4, 16), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten()) + model.aux_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_init_is_seeded_and_scales_residual_outputs():
    a, b = build("llama"), build("llama")
    a.init_weights(seed=3)
    b.init_weights(seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    block = a.layers[0]
    assert block.attn.o_proj.weight.std() < 0.7 * block.attn.q_proj.weight.std()
    assert torch.equal(block.attn_norm.weight, torch.ones(128))


def test_tied_embeddings_share_one_tensor():
    model = build("llama")
    assert model.lm_head.weight is model.embed_tokens.weight
    untied = build("llama", tie_embeddings=False)
    assert untied.lm_head.weight is not untied.embed_tokens.weight


def test_bf16_forward_runs():
    model = build("deepseek").to(torch.bfloat16)
    assert model(torch.randint(0, 512, (1, 6))).dtype == torch.bfloat16


@pytest.mark.parametrize(
    "name, extra",
    [("llama", {}), ("mistral", {}), ("deepseek", {"moe_capacity_factor": 1.5}), ("alibi-layernorm-gelu", {})],
)
def test_block_forward_compiles_without_graph_breaks(name, extra):
    model = build(name, **extra)
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # fullgraph raises on any graph break
    ids = torch.randint(0, 512, (2, 8))
    torch.testing.assert_close(compiled(ids), model(ids))
