"""One stage of an LLMJob: a kind, its settings section, what it needs and what it produces.

Each kind reads named artifacts (`corpus`, `tokens`, `tokenizer`, `model`) produced by the stages it needs, directly or
through their own needs. The tables below are the contract the DAG check and the executor share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from .base import SpecModel
from .data import DataSpec
from .evaluate import EvalSpec
from .fields import ImageRef
from .finetune import AlignSpec, FinetuneSpec
from .limits import MAX_STAGES
from .resources import Resources
from .serve import ServeSpec
from .stage_model import TAKES_MODEL, StageModelSpec
from .tokenizer import TokenizerSpec
from .train import TrainSpec


@dataclass(frozen=True)
class KindRules:
    """What the spec says about one stage kind: the settings sections it takes (its own first), the artifacts it
    reads and writes by name, and whether it runs a training loop (a PyTorchJob on a cluster, retried from its last
    checkpoint). The kind's runner is its entry in `trainer.stages.registry.RUNNERS`, which a test holds to this."""

    sections: tuple[str, ...]
    outputs: tuple[str, ...]
    inputs: tuple[str, ...] = ()
    optional_inputs: Callable[[Any], tuple[str, ...]] | None = None  # read only with some settings (stage -> names)
    trains: bool = False
    defaultable: bool = False  # its own section may be left out: all its settings have defaults
    example: str | None = None  # a minimal own section, shown when it is missing

    @property
    def own(self) -> str | None:
        return self.sections[0] if self.sections else None


# Every stage kind, declared once: the `kind` field's allowed values, the DAG's inputs and outputs, the settings
# check and the runners' registry all read this table.
KINDS: dict[str, KindRules] = {
    "data": KindRules(("data",), ("corpus",), example="data: {sources: [{type: stdlib}]}"),
    "tokenizer": KindRules(("tokenizer",), ("tokenizer", "tokens"), ("corpus",), defaultable=True),
    "pretrain": KindRules(("train",), ("model",), ("tokens", "tokenizer"), trains=True, example="train: {steps: 1000}"),
    "finetune": KindRules(
        ("finetune", "train"), ("model",), ("model",), trains=True, example="finetune: {dataset: {path: sft.jsonl}}"
    ),
    "align": KindRules(
        ("align", "train"), ("model",), ("model",), trains=True, example="align: {dataset: {path: prefs.jsonl}}"
    ),
    "eval": KindRules(
        ("eval",),
        ("report",),
        ("model",),
        optional_inputs=lambda stage: ("tokens",) if "perplexity" in stage.eval.metrics else (),
        defaultable=True,
    ),
    "serve": KindRules(("serve",), ("endpoint",), ("model",), defaultable=True),
}
StageKind = Literal[tuple(KINDS)]  # type: ignore[valid-type]  # the table's keys, for pydantic, the CRD and docs
STAGE_KINDS: tuple[str, ...] = tuple(KINDS)
SECTIONS: dict[str, tuple[str, ...]] = {kind: rules.sections for kind, rules in KINDS.items()}
OUTPUTS: dict[str, tuple[str, ...]] = {kind: rules.outputs for kind, rules in KINDS.items()}

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class Stage(SpecModel):
    name: str = Field(
        pattern=NAME_PATTERN,
        max_length=16,
        description="Lowercase letters, digits and '-'; at most 16 characters (it becomes part of Kubernetes names).",
    )
    kind: StageKind
    needs: list[str] = Field(
        default_factory=list, max_length=MAX_STAGES, description="Stages that must succeed before this one starts."
    )
    resources: Resources = Field(default_factory=Resources)
    image: ImageRef | None = Field(None, description="Container image for this stage; default: spec.image.")
    model: StageModelSpec | None = Field(
        None, description="finetune and align: the stage whose model to start from, and settings to change on it."
    )
    data: DataSpec | None = None
    tokenizer: TokenizerSpec | None = None
    train: TrainSpec | None = None
    finetune: FinetuneSpec | None = None
    align: AlignSpec | None = None
    eval: EvalSpec | None = None
    serve: ServeSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_section(cls, data: Any) -> Any:
        kind = data.get("kind") if isinstance(data, dict) else None
        rules = KINDS.get(kind) if isinstance(kind, str) else None
        if rules is not None and rules.defaultable and data.get(rules.own) is None:
            data = {**data, rules.own: {}}
        return data

    @model_validator(mode="after")
    def _sections_match_kind(self) -> Stage:
        rules = KINDS[self.kind]
        allowed, own = rules.sections, rules.own
        if own is not None and getattr(self, own) is None:
            raise ValueError(
                f"{a_or_an(self.kind)} stage needs a `{own}` section, e.g. {rules.example or own + ': {}'}"
            )
        stray = [
            s
            for kind_sections in SECTIONS.values()
            for s in kind_sections
            if s not in allowed and getattr(self, s) is not None
        ]
        if stray:
            takes = ", ".join(f"`{s}`" for s in allowed) or "no settings section"
            raise ValueError(
                f"{a_or_an(self.kind)} stage takes only {takes}; "
                f"remove {', '.join(f'`{s}`' for s in dict.fromkeys(stray))} or change `kind`"
            )
        if self.name in self.needs:
            raise ValueError(f"stage '{self.name}' lists itself in `needs`")
        if self.model is not None and self.kind not in TAKES_MODEL:
            raise ValueError(
                f"`model` sets the starting model of {' and '.join(TAKES_MODEL)} stages; {a_or_an(self.kind)} stage "
                "takes none: remove it (spec.model describes the job's model)"
            )
        return self

    @property
    def inputs(self) -> tuple[str, ...]:
        """Artifacts this stage reads, by name."""
        rules = KINDS[self.kind]
        return rules.inputs + (rules.optional_inputs(self) if rules.optional_inputs else ())

    @property
    def outputs(self) -> tuple[str, ...]:
        return KINDS[self.kind].outputs

    @property
    def trains(self) -> bool:
        """True for stages that run a training loop (and so render to a PyTorchJob on a cluster)."""
        return KINDS[self.kind].trains


def a_or_an(word: str) -> str:
    """The word quoted, after its article: "an 'eval'", "a 'data'"."""
    return f"{'an' if word[0] in 'aeiou' else 'a'} '{word}'"
