"""Compile granularity: which modules `compile_for_training` compiles, and the engine's choice per strategy.

Whether a graph is faster is measured in bench/train.py on a GPU, not here."""

from __future__ import annotations

import pytest

from llm_platform.trainer.model import Transformer, get_config
from llm_platform.trainer.train.distributed import compile_for_training, compile_granularity
from llm_platform.trainer.train.objective import NextTokenLoss


def compiled(module) -> bool:
    return module._compiled_call_impl is not None  # set by nn.Module.compile(); the graph is traced at first call


def build():
    model = Transformer(get_config("llama-tiny"))
    return model, NextTokenLoss(model, fused_loss=True)


def test_model_granularity_compiles_the_objective_as_one_graph():
    model, objective = build()
    compile_for_training(objective, model, "model")
    assert compiled(objective)
    assert not any(compiled(block) for block in model.layers)


def test_block_granularity_compiles_each_block_and_the_head_with_the_loss():
    model, objective = build()
    compile_for_training(objective, model, "block")
    assert not compiled(objective)
    assert all(compiled(block) for block in model.layers)
    assert hasattr(objective.head_loss, "_torchdynamo_orig_callable")


def test_fsdp_compiles_per_block_and_the_others_whole():
    assert compile_granularity("fsdp") == "block"
    assert compile_granularity("single") == compile_granularity("ddp") == "model"


def test_unknown_granularity_is_an_error_naming_the_choices():
    model, objective = build()
    with pytest.raises(ValueError, match=r"'layer'.*\['model', 'block'\]"):
        compile_for_training(objective, model, "layer")
