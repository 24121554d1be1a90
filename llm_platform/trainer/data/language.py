"""Language identification with lingua (its n-gram models ship inside the wheel: nothing is downloaded at run time).

Each document is tagged with `meta['language']` (ISO 639-1) and `meta['language_score']` (lingua's confidence,
0..1, relative to the candidate languages), and dropped when the top language is not wanted or not certain enough.
FineWeb keeps English with a confidence of at least 0.65, which is the default here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .document import Document, Drop


@dataclass(frozen=True)
class LanguageConfig:
    """The `language` section. `keep` empty: tag only, keep every language."""

    keep: tuple[str, ...] = ("en",)
    threshold: float = 0.65
    candidates: tuple[str, ...] | None = None
    max_chars: int = 2000
    low_accuracy: bool = False


def _language(code: str):
    from lingua import IsoCode639_1, Language

    try:
        return Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper()))
    except AttributeError:
        raise ValueError(f"language '{code}' is not an ISO 639-1 code lingua knows (e.g. en, de, fr, zh)") from None


@lru_cache(maxsize=4)
def detector(candidates: tuple[str, ...] | None, low_accuracy: bool):
    """A lingua detector, built once per process: the models are large, and loaded lazily by lingua."""
    try:
        from lingua import LanguageDetectorBuilder
    except ImportError as e:
        raise ImportError("language identification needs lingua: pip install 'llm-platform[data]'") from e
    if candidates:
        if len(candidates) < 2:
            raise ValueError("language.candidates needs at least two languages to choose between")
        builder = LanguageDetectorBuilder.from_languages(*(_language(c) for c in candidates))
    else:
        builder = LanguageDetectorBuilder.from_all_languages()
    if low_accuracy:
        builder = builder.with_low_accuracy_mode()
    return builder.build()


def _top(values) -> tuple[str, float]:
    if not values or values[0].value <= 0:
        return "unknown", 0.0
    return values[0].language.iso_code_639_1.name.lower(), float(values[0].value)


class LanguageStep:
    """Tags and filters documents by language. Batches are detected in parallel inside lingua."""

    name = "language"

    def __init__(self, config: LanguageConfig = LanguageConfig()):
        for code in (*config.keep, *(config.candidates or ())):
            _language(code)
        self.config = config
        self.keep = {c.lower() for c in config.keep}

    def _verdict(self, doc: Document, language: str, score: float) -> Document | Drop:
        if self.keep and language not in self.keep:
            return Drop(f"language_{language}")
        if self.keep and score < self.config.threshold:
            return Drop("language_unsure")
        return doc.with_meta(language=language, language_score=round(score, 4))

    def __call__(self, doc: Document) -> Document | Drop:
        return self.process_batch([doc])[0]

    def process_batch(self, docs: list[Document]) -> list[Document | Drop]:
        d = detector(self.config.candidates, self.config.low_accuracy)
        texts = [doc.text[: self.config.max_chars] for doc in docs]
        found = d.compute_language_confidence_values_in_parallel(texts)
        return [self._verdict(doc, *_top(values)) for doc, values in zip(docs, found, strict=True)]
