"""What to adapt and how: a plain dataclass, so the trainer runs where the LLMJob API (pydantic) is absent.

Field names follow ``llm_platform.api.finetune.LoraSpec`` plus ``dora``, which the stage sets for ``method: dora``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_LINEAR = "all-linear"


@dataclass
class LoraConfig:
    """rank: inner width r of the update B @ A. alpha: the update is scaled by alpha / rank (peft's default, not
    rsLoRA). dropout: applied to the adapter's input only. targets: module-name suffixes as peft matches them
    (``q_proj`` matches every ``...q_proj``; our names and Hugging Face's both count), or ``"all-linear"`` = every
    linear layer except the LM head. dora: weight-decomposed LoRA (a trained per-output-row magnitude)."""

    rank: int
    alpha: float
    dropout: float = 0.0
    targets: list[str] | str = field(default=ALL_LINEAR)
    dora: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"LoraConfig.rank: must be a positive integer, got {self.rank!r}")
        if not self.alpha > 0:
            raise ValueError(f"LoraConfig.alpha: must be > 0, got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoraConfig.dropout: must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.targets, str):
            if self.targets != ALL_LINEAR:
                raise ValueError(
                    f"LoraConfig.targets: {self.targets!r} is neither a list of module names nor {ALL_LINEAR!r}; "
                    f"write e.g. ['q_proj', 'v_proj'] or {ALL_LINEAR!r}"
                )
        elif not self.targets or not all(isinstance(t, str) and t for t in self.targets):
            raise ValueError(f"LoraConfig.targets: give at least one module name, got {self.targets!r}")
        else:
            self.targets = list(self.targets)

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank
