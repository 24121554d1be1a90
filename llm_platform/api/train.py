"""Training hyperparameters shared by `pretrain`, `finetune` and `align` stages.

Each setting is declared once, in the trainer's plain dataclasses (`llm_platform.trainer.train.config`), which the
engine uses without pydantic installed. `TrainSpec` and `ParallelSpec` are generated from them: the same names,
types, defaults, descriptions and bounds, plus the checks across fields that only the API makes.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from pydantic import Field, create_model, model_validator

from llm_platform.trainer.train.config import ParallelConfig, TrainConfig, long_context_problem, world_size_problem

from .base import SpecModel


def spec_model(config: type, name: str, base: type[SpecModel] = SpecModel) -> type[SpecModel]:
    """A pydantic model with the fields of the dataclass `config`: a field's `setting` metadata becomes its
    `Field(...)` (description and bounds), and a dataclass-typed field becomes the spec model generated from it."""
    hints = typing.get_type_hints(config)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        annotation = hints[f.name]
        if dataclasses.is_dataclass(annotation):
            annotation = _NESTED[annotation]
            fields[f.name] = (annotation, Field(default_factory=annotation, **f.metadata))
        elif f.default is not dataclasses.MISSING:
            fields[f.name] = (annotation, Field(f.default, **f.metadata))
        else:
            fields[f.name] = (annotation, Field(**f.metadata))
    model = create_model(name, __base__=base, __module__=__name__, **fields)
    model.__doc__ = config.__doc__
    return model


ParallelSpec = spec_model(ParallelConfig, "ParallelSpec")
_NESTED: dict[type, type[SpecModel]] = {ParallelConfig: ParallelSpec}


class _TrainChecks(SpecModel):
    """The checks across training settings that the API makes before anything runs."""

    @model_validator(mode="after")
    def _length(self) -> Any:
        if (self.steps is None) == (self.tokens is None):
            raise ValueError("give exactly one of `steps` or `tokens` to say how long to train")
        if self.betas[0] >= 1 or self.betas[1] >= 1 or min(self.betas) < 0:
            raise ValueError(f"`betas` must lie in [0, 1), got {list(self.betas)}")
        if self.steps is not None and "warmup_steps" in self.model_fields_set and self.warmup_steps > self.steps:
            raise ValueError(f"`warmup_steps` ({self.warmup_steps}) is more than `steps` ({self.steps}); lower it")
        problem = long_context_problem(self)
        if problem is None and self.context_parallel > 1:
            processes = self.parallel.nodes * max(1, self.parallel.gpus_per_node)
            problem = world_size_problem(self, processes)
            if problem:
                problem = f"{problem.removeprefix('train.')} (parallel: nodes x gpus_per_node = {processes})"
        if problem:
            raise ValueError(f"`{problem.split(':', 1)[0]}`:{problem.split(':', 1)[1]}")
        return self


TrainSpec = spec_model(TrainConfig, "TrainSpec", _TrainChecks)
