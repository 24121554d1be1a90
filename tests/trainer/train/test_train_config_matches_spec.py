"""The engine's plain-dataclass TrainConfig mirrors the API's TrainSpec: same fields, same defaults."""

from __future__ import annotations

import dataclasses

from llm_platform.api.train import ParallelSpec, TrainSpec
from llm_platform.trainer.train.config import ParallelConfig, TrainConfig


def _defaults(model) -> dict:
    return {name: field.get_default(call_default_factory=True) for name, field in model.model_fields.items()}


def test_every_spec_field_reaches_the_engine_with_the_same_default():
    config = TrainConfig(steps=1)
    spec_defaults = _defaults(TrainSpec)
    assert set(spec_defaults) == {f.name for f in dataclasses.fields(TrainConfig)}
    for name, default in spec_defaults.items():
        if name in ("steps", "parallel"):
            continue
        assert getattr(config, name) == default, name
    assert _defaults(ParallelSpec) == dataclasses.asdict(ParallelConfig())


def test_a_validated_spec_converts_without_loss():
    spec = TrainSpec(tokens=1e6, micro_batch=4, parallel={"strategy": "fsdp", "nodes": 2, "gpus_per_node": 8})
    config = TrainConfig.from_dict(spec.model_dump())
    assert config.parallel.strategy == "fsdp" and config.micro_batch == 4
    assert config.total_steps(world_size=16) == int(1e6 // (4 * 2048 * 16))
