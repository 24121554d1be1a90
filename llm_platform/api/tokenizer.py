"""The `tokenizer` stage: train (or import) a tokenizer, then tokenize and pack the corpus for training."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from llm_platform.trainer.tokenizer.patterns import NAMED_PATTERNS, REGEX_PREFIX, pattern_problem

from .base import SpecModel
from .fields import ReadPath


class TokenizerSpec(SpecModel):
    vocab_size: int = Field(32000, ge=260, le=1_048_576, description="Vocabulary size, special tokens included.")
    from_: ReadPath | None = Field(
        None, alias="from", description="Use this existing tokenizer (folder or file URI) instead of training one."
    )
    min_frequency: int = Field(2, ge=1, le=2**31 - 1, description="Merges seen fewer times than this are not learned.")
    pattern: str | None = Field(
        None,
        max_length=1000,
        description=f"Pre-tokenization pattern: a name ({', '.join(sorted(NAMED_PATTERNS))}) or "
        f"`{REGEX_PREFIX}<regex>`; default is the Llama 3 / GPT-4 style one.",
    )
    train_max_bytes: int | None = Field(
        None, ge=1, description="Train on at most this many bytes of the corpus (all of it is still tokenized)."
    )

    @field_validator("pattern")
    @classmethod
    def _known_pattern(cls, pattern: str | None) -> str | None:
        problem = None if pattern is None else pattern_problem(pattern)
        if problem is not None:
            raise ValueError(problem)
        return pattern

    @model_validator(mode="after")
    def _train_or_import(self) -> TokenizerSpec:
        if self.from_ and "vocab_size" in self.model_fields_set:
            raise ValueError("set either `from` (import a tokenizer) or `vocab_size` (train one), not both")
        return self
