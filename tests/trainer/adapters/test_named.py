"""Several named adapters on one base: each computes what a model carrying only it computes; switching, turning off,
merging and unmerging; a weighted combination is the weighted sum of the deltas."""

from __future__ import annotations

import pytest
import torch

from llm_platform.trainer.adapters import LoraConfig, apply_lora
from llm_platform.trainer.adapters.inject import adapter_modules
from llm_platform.trainer.adapters.named import (
    active_adapter,
    adapter_names,
    combine_adapters,
    merge_adapter,
    set_adapter,
    unmerge_adapter,
)

from .reference import our_model, randomize_adapters, token_batch

ADAPTERS = {
    "sql": LoraConfig(rank=4, alpha=8, targets=["q_proj", "v_proj"]),
    "chat": LoraConfig(rank=2, alpha=4, targets=["v_proj", "down_proj"]),
    "style": LoraConfig(rank=3, alpha=3, targets="all-linear", dora=True),
}


def single(name: str) -> torch.nn.Module:
    """A model carrying only adapter `name`, with the weights it gets below."""
    model = our_model()
    apply_lora(model, ADAPTERS[name], name=name)
    randomize_adapters(model, seed=len(name))
    return model


def several() -> torch.nn.Module:
    model = our_model()
    for name in ADAPTERS:
        apply_lora(model, ADAPTERS[name], name=name)
        randomize_adapters(model, seed=len(name))  # the installed (new) adapter only
    return model


def logits(model, ids):
    with torch.no_grad():
        return model(ids)


def test_each_adapter_computes_what_a_model_with_only_it_computes():
    model, ids = several(), token_batch(512)
    assert adapter_names(model) == sorted(ADAPTERS) and active_adapter(model) == "style"
    for name in ["sql", "chat", "style", "sql"]:
        set_adapter(model, name)
        assert active_adapter(model) == name
        torch.testing.assert_close(logits(model, ids), logits(single(name), ids), rtol=0, atol=1e-6)
        trainable = [p for p in model.parameters() if p.requires_grad]
        assert sum(p.numel() for p in trainable) == sum(p.numel() for p in single(name).parameters() if p.requires_grad)
    set_adapter(model, None)
    assert active_adapter(model) is None and not adapter_modules(model)
    torch.testing.assert_close(logits(model, ids), logits(our_model(), ids), rtol=0, atol=0)
    with pytest.raises(ValueError, match="no adapter named 'nope' on this model \\(adapters: chat, sql, style\\)"):
        set_adapter(model, "nope")


def test_merge_then_unmerge_gives_back_the_adapter_model():
    model, ids = several(), token_batch(512)
    set_adapter(model, "sql")
    adapted = logits(model, ids)
    assert merge_adapter(model) == "sql"
    torch.testing.assert_close(logits(model, ids), adapted, rtol=1e-5, atol=1e-5)
    for refused in (lambda: set_adapter(model, "chat"), lambda: combine_adapters(model, {"sql": 1.0}, name="x"),
                    lambda: apply_lora(model, ADAPTERS["sql"], name="more")):  # fmt: skip
        with pytest.raises(ValueError, match="unmerge_adapter"):
            refused()
    assert unmerge_adapter(model) == "sql"
    set_adapter(model, None)
    torch.testing.assert_close(logits(model, ids), logits(our_model(), ids), rtol=1e-5, atol=1e-5)
    set_adapter(model, "style")
    with pytest.raises(ValueError, match="DoRA"):
        merge_adapter(model)


def test_a_weighted_combination_is_the_weighted_sum_of_the_deltas():
    model = several()
    weights = {"sql": 0.7, "chat": -0.3}
    deltas = {}
    for name in weights:
        set_adapter(model, name)
        deltas[name] = {p: m.scaling * m.lora_B.weight @ m.lora_A.weight for p, m in adapter_modules(model).items()}
    combine_adapters(model, weights, name="mix")
    combined = adapter_modules(model)
    assert active_adapter(model) == "mix" and set(combined) == set(deltas["sql"]) | set(deltas["chat"])
    for path, layer in combined.items():
        expected = sum(w * deltas[n][path] for n, w in weights.items() if path in deltas[n])
        got = layer.scaling * layer.lora_B.weight @ layer.lora_A.weight
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert combined["layers.0.attn.v_proj"].rank == 6  # 4 + 2: the ranks stack
    with pytest.raises(ValueError, match="DoRA"):
        combine_adapters(model, {"sql": 1.0, "style": 1.0}, name="again")
    assert active_adapter(model) == "mix" and "again" not in adapter_names(model)  # nothing changed
    with pytest.raises(ValueError, match="exists already"):
        combine_adapters(model, {"sql": 1.0}, name="mix")
