"""The API's TrainSpec is generated from the engine's plain-dataclass TrainConfig: same fields, defaults and bounds."""

from __future__ import annotations

import dataclasses

import pytest

from llm_platform.api import SpecError
from llm_platform.api.train import ParallelSpec, TrainSpec
from llm_platform.trainer.train.config import ParallelConfig, TrainConfig


def _defaults(model) -> dict:
    return {name: field.get_default(call_default_factory=True) for name, field in model.model_fields.items()}


def test_every_config_field_is_a_spec_field_with_the_same_default():
    assert list(TrainSpec.model_fields) == [f.name for f in dataclasses.fields(TrainConfig)]
    assert TrainSpec.model_validate({"steps": 1}).model_dump() == dataclasses.asdict(TrainConfig(steps=1))
    assert _defaults(ParallelSpec) == dataclasses.asdict(ParallelConfig())


def test_the_bounds_declared_on_the_dataclass_are_enforced_by_the_spec():
    with pytest.raises((SpecError, ValueError)) as refused:
        TrainSpec.model_validate({"steps": 1, "micro_batch": 0})
    assert "micro_batch" in str(refused.value)
    with pytest.raises((SpecError, ValueError)) as refused:
        TrainSpec.model_validate({"steps": 1, "schedule": "cyclic"})
    assert "schedule" in str(refused.value)


def test_a_validated_spec_converts_without_loss():
    spec = TrainSpec(tokens=1e6, micro_batch=4, parallel={"strategy": "fsdp", "nodes": 2, "gpus_per_node": 8})
    config = TrainConfig.from_dict(spec.model_dump())
    assert config.parallel.strategy == "fsdp" and config.micro_batch == 4
    assert config.total_steps(world_size=16) == int(1e6 // (4 * 2048 * 16))
