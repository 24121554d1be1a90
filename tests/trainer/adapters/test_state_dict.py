"""The adapted model's state dict: base names unchanged plus peft-style adapter names, so checkpoints resume and a
copy rebuilt on the meta device (as rank 0 does from a gathered FSDP state dict) computes the same."""

from __future__ import annotations

import pytest
import torch

from llm_platform.trainer.adapters import LoraConfig, apply_lora, merge_lora
from llm_platform.trainer.model import Transformer

from .reference import max_diff, our_model, randomize_adapters, token_batch

CONFIG = LoraConfig(rank=4, alpha=8, targets=["q_proj", "down_proj"], dora=True)


def test_base_names_stay_and_adapter_names_are_added():
    base_names = set(our_model().state_dict())
    model = our_model()
    apply_lora(model, CONFIG)
    added = set(model.state_dict()) - base_names
    assert base_names <= set(model.state_dict())
    assert added == {
        f"layers.{i}.{module}.{tensor}"
        for i in range(2)
        for module in ("attn.q_proj", "mlp.down_proj")
        for tensor in ("lora_A.weight", "lora_B.weight", "lora_magnitude_vector")
    }


@pytest.mark.parametrize("merge", [False, True], ids=["adapted", "merged"])
def test_meta_rebuild_from_a_state_dict_computes_the_same(merge):
    model = our_model()
    apply_lora(model, CONFIG)
    randomize_adapters(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with torch.device("meta"):
        copy = Transformer(model.config)
        apply_lora(copy, CONFIG)
    copy.load_state_dict(state, assign=True)
    copy.materialize_non_persistent("cpu")
    if merge:
        merge_lora(copy)
    ids = token_batch(model.config.vocab_size)
    with torch.no_grad():
        assert max_diff(copy.eval()(ids), model(ids)) <= 1e-5
