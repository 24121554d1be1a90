"""The `data` stage: where documents come from and what cleaning they get before tokenization."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import SpecModel


class Source(SpecModel):
    """One corpus source. `type` says how `path` is read."""

    type: Literal["stdlib", "files", "jsonl", "parquet"] = Field(
        description="stdlib: this Python's own standard-library source tree (needs no path); files: a glob of text "
        "files; jsonl: a glob of JSON-lines files; parquet: a glob of Parquet files. Paths may be local or s3://."
    )
    path: str | None = Field(None, description="Glob of files (not used by `stdlib`).")
    include: str = Field("*.py", description="For `stdlib`: which files of the tree to read.")
    field: str = Field("text", description="For jsonl/parquet: the field or column holding the text.")
    max_docs: int | None = Field(None, ge=1, description="Read at most this many documents from the source.")

    @model_validator(mode="after")
    def _path_needed(self) -> Source:
        if self.type != "stdlib" and not self.path:
            raise ValueError(f"a '{self.type}' source needs `path` (a file glob such as 'corpus/*.{self.type}')")
        return self


class CleanSpec(SpecModel):
    """Text normalisation applied to every document."""

    normalize: Literal["NFC", "NFKC", "none"] = "NFC"
    strip_control: bool = Field(True, description="Remove control characters other than newline and tab.")
    min_chars: int = Field(32, ge=0, description="Drop documents shorter than this after cleaning.")
    max_chars: int | None = Field(None, ge=1, description="Truncate longer documents to this many characters.")


class DedupSpec(SpecModel):
    exact: bool = Field(True, description="Drop documents whose normalised text hash was already seen.")


class DataSpec(SpecModel):
    sources: list[Source] = Field(min_length=1, description="Where the documents come from.")
    clean: CleanSpec = Field(default_factory=CleanSpec)
    dedup: DedupSpec = Field(default_factory=DedupSpec)
    val_fraction: float = Field(
        0.02, ge=0.0, lt=0.5, description="Share of documents held out for validation (chosen by document hash)."
    )
    engine: Literal["local", "ray"] = Field("local", description="local: this process; ray: a Ray Data pipeline.")
