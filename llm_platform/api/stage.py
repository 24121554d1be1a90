"""One stage of an LLMJob: a kind, its settings section, what it needs and what it produces.

Each kind reads named artifacts (`corpus`, `tokens`, `tokenizer`, `model`) produced by the stages it needs, directly or
through their own needs. The tables below are the contract the DAG check and the executor share.
"""

from __future__ import annotations

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

StageKind = Literal["data", "tokenizer", "pretrain", "finetune", "align", "eval", "serve"]
STAGE_KINDS: tuple[str, ...] = StageKind.__args__

# Settings sections each kind takes; the first one is the kind's own, and must be present unless it has defaults.
SECTIONS: dict[str, tuple[str, ...]] = {
    "data": ("data",),
    "tokenizer": ("tokenizer",),
    "pretrain": ("train",),
    "finetune": ("finetune", "train"),
    "align": ("align", "train"),
    "eval": ("eval",),
    "serve": ("serve",),
}
_DEFAULTABLE = {"tokenizer", "eval", "serve"}
_EXAMPLE = {
    "data": "data: {sources: [{type: stdlib}]}",
    "pretrain": "train: {steps: 1000}",
    "finetune": "finetune: {dataset: {path: sft.jsonl}}",
    "align": "align: {dataset: {path: prefs.jsonl}}",
}

OUTPUTS: dict[str, tuple[str, ...]] = {
    "data": ("corpus",),
    "tokenizer": ("tokenizer", "tokens"),
    "pretrain": ("model",),
    "finetune": ("model",),
    "align": ("model",),
    "eval": ("report",),
    "serve": ("endpoint",),
}

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
        if isinstance(kind, str) and kind in _DEFAULTABLE and data.get(kind) is None:
            data = {**data, kind: {}}
        return data

    @model_validator(mode="after")
    def _sections_match_kind(self) -> Stage:
        allowed = SECTIONS[self.kind]
        own = allowed[0]
        if getattr(self, own) is None:
            raise ValueError(
                f"{a_or_an(self.kind)} stage needs a `{own}` section, e.g. {_EXAMPLE.get(self.kind, own + ': {}')}"
            )
        stray = [
            s
            for kind_sections in SECTIONS.values()
            for s in kind_sections
            if s not in allowed and getattr(self, s) is not None
        ]
        if stray:
            raise ValueError(
                f"{a_or_an(self.kind)} stage takes only {', '.join(f'`{s}`' for s in allowed)}; "
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
        if self.kind == "tokenizer":
            return ("corpus",)
        if self.kind == "pretrain":
            return ("tokens", "tokenizer")
        if self.kind == "eval":
            return ("model", "tokens") if "perplexity" in self.eval.metrics else ("model",)
        if self.kind in ("finetune", "align", "serve"):
            return ("model",)
        return ()

    @property
    def outputs(self) -> tuple[str, ...]:
        return OUTPUTS[self.kind]

    @property
    def trains(self) -> bool:
        """True for stages that run a training loop (and so render to a PyTorchJob on a cluster)."""
        return self.kind in ("pretrain", "finetune", "align")


def a_or_an(word: str) -> str:
    """The word quoted, after its article: "an 'eval'", "a 'data'"."""
    return f"{'an' if word[0] in 'aeiou' else 'a'} '{word}'"
