"""Gopher's heuristic filters (Rae et al. 2021, "Scaling Language Models", section A.1.1 and table A1).

Quality: documents of natural prose have a sane length, word length, few symbols, few bullet/ellipsis lines, mostly
alphabetic words and at least a couple of English stop words. Repetition: boilerplate and spam repeat lines,
paragraphs and n-grams. Defaults are the paper's thresholds; each returns the reason a document fails, or None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .analysis import duplicate_count_and_chars, repeated_ngram_chars, top_ngram_chars, view

GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
_PARAGRAPH_BREAK = re.compile(r"\n{2,}")


@dataclass(frozen=True)
class GopherQualityConfig:
    """Thresholds of the Gopher quality rules; `None` turns a rule off."""

    min_doc_words: int | None = 50
    max_doc_words: int | None = 100_000
    min_avg_word_length: float | None = 3
    max_avg_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    min_alpha_words_ratio: float | None = 0.8
    min_stop_words: int | None = 2
    stop_words: tuple[str, ...] = GOPHER_STOP_WORDS


def gopher_quality(text: str, c: GopherQualityConfig = GopherQualityConfig()) -> str | None:
    v = view(text)
    words = v.words  # tokens that are not pure punctuation or symbols
    n_tokens = len(v.tokens)
    if c.min_doc_words is not None and len(words) < c.min_doc_words:
        return "gopher_short_doc"
    if c.max_doc_words is not None and len(words) > c.max_doc_words:
        return "gopher_long_doc"
    if not words:
        return "gopher_short_doc"
    mean_length = sum(map(len, words)) / len(words)
    if c.min_avg_word_length is not None and mean_length < c.min_avg_word_length:
        return "gopher_below_avg_word_length"
    if c.max_avg_word_length is not None and mean_length > c.max_avg_word_length:
        return "gopher_above_avg_word_length"
    if c.max_symbol_word_ratio is not None:
        if text.count("#") / n_tokens > c.max_symbol_word_ratio:
            return "gopher_too_many_hashes"
        if (text.count("...") + text.count("…")) / n_tokens > c.max_symbol_word_ratio:
            return "gopher_too_many_ellipsis"
    lines = v.lines
    if c.max_bullet_lines_ratio is not None:
        bullets = sum(1 for line in lines if line.lstrip().startswith(("•", "-")))
        if bullets / len(lines) > c.max_bullet_lines_ratio:
            return "gopher_too_many_bullets"
    if c.max_ellipsis_lines_ratio is not None:
        ellipsis = sum(1 for line in lines if line.rstrip().endswith(("...", "…")))
        if ellipsis / len(lines) > c.max_ellipsis_lines_ratio:
            return "gopher_too_many_end_ellipsis"
    if c.min_alpha_words_ratio is not None and v.alpha_token_count / n_tokens < c.min_alpha_words_ratio:
        return "gopher_below_alpha_ratio"
    if c.min_stop_words is not None:
        present = set(c.stop_words).intersection(map(str.lower, words))
        if len(present) < c.min_stop_words:
            return "gopher_too_few_stop_words"
    return None


def _default_top() -> dict[int, float]:
    return {2: 0.20, 3: 0.18, 4: 0.16}


def _default_dup() -> dict[int, float]:
    return {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}


@dataclass(frozen=True)
class GopherRepetitionConfig:
    """Thresholds of the Gopher repetition rules (table A1); `None` or an empty mapping turns a rule off.

    `top_ngram_char_frac[n]`: most frequent n-gram's share of the characters; `dup_ngram_char_frac[n]`: share of
    characters inside n-grams that repeat an earlier one."""

    dup_line_frac: float | None = 0.30
    dup_para_frac: float | None = 0.30
    dup_line_char_frac: float | None = 0.20
    dup_para_char_frac: float | None = 0.20
    top_ngram_char_frac: dict[int, float] = field(default_factory=_default_top)
    dup_ngram_char_frac: dict[int, float] = field(default_factory=_default_dup)


def gopher_repetition(text: str, c: GopherRepetitionConfig = GopherRepetitionConfig()) -> str | None:
    if not text:
        return "gopher_empty"
    chars = len(text)
    paragraphs = _PARAGRAPH_BREAK.split(text.strip())
    repeated, repeated_chars = duplicate_count_and_chars(paragraphs)
    if c.dup_para_frac is not None and repeated / len(paragraphs) > c.dup_para_frac:
        return "gopher_dup_para_frac"
    if c.dup_para_char_frac is not None and repeated_chars / chars > c.dup_para_char_frac:
        return "gopher_dup_para_char_frac"
    v = view(text)
    lines = [line for line in v.lines if line]
    repeated, repeated_chars = duplicate_count_and_chars(lines)
    if c.dup_line_frac is not None and repeated / len(lines) > c.dup_line_frac:
        return "gopher_dup_line_frac"
    if c.dup_line_char_frac is not None and repeated_chars / chars > c.dup_line_char_frac:
        return "gopher_dup_line_char_frac"
    for n, limit in sorted(c.top_ngram_char_frac.items()):
        if top_ngram_chars(v, n) / chars > limit:
            return f"gopher_top_{n}_gram"
    for n, limit in sorted(c.dup_ngram_char_frac.items()):
        if repeated_ngram_chars(v, n) / chars > limit:
            return f"gopher_dup_{n}_gram"
    return None
