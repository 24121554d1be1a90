"""A tuning stage's `model` section: which earlier stage's model it starts from, and settings to change on it.

Context extension is the reason: a model pretrained at a short context is fine-tuned at a long one with positions
encoded differently, e.g. `model: {from: pretrain, overrides: {rope_scaling: {type: yarn, factor: 4},
max_seq_len: 8192}}`. Only settings that leave the weights as they are may change on a trained model.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from .base import SpecModel
from .overrides import override_problems

# stage kinds that load a model and so can take a `model` section
TAKES_MODEL = ("finetune", "align")


class StageModelSpec(SpecModel):
    from_: str | None = Field(
        None,
        alias="from",
        max_length=16,
        description="The stage (among this stage's needs, directly or through theirs) whose model to start from; "
        "default: the nearest one.",
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Settings of the starting model's config to change that leave its weights as they are: "
        "max_seq_len, rope_theta, rope_scaling, sliding_window, attn_impl, router settings.",
    )

    @model_validator(mode="after")
    def _overrides(self) -> StageModelSpec:
        values, problems = override_problems(self.overrides, None, loc=("overrides",))
        if problems:
            raise ValueError("; ".join(str(p) for p in problems))
        self.__dict__["overrides"] = values
        return self
