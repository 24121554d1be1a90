"""A document moving through the pipeline, and the verdict a step returns when it removes one."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Document:
    """One text with where it came from. `meta` carries what steps learned about it (language, scores, signatures)."""

    id: str
    text: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def with_text(self, text: str) -> Document:
        return self if text == self.text else replace(self, text=text)

    def with_meta(self, **values: Any) -> Document:
        return replace(self, meta={**self.meta, **values})


@dataclass(frozen=True)
class Drop:
    """A step's decision to remove a document, with a short machine-readable reason (e.g. `gopher_short_doc`)."""

    reason: str
