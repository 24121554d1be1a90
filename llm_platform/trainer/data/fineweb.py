"""FineWeb's own quality rules (Penedo et al. 2024, "The FineWeb Datasets", section 3.3.3).

They catch what survives C4 and Gopher on web text: pages of lines without terminal punctuation (menus, lists of
links), pages of mostly short lines, pages where lines repeat, and list-like pages with a newline every few words.
"""

from __future__ import annotations

from dataclasses import dataclass

from .analysis import duplicate_count_and_chars, view

# Sentence-final punctuation across scripts: Latin, CJK full-width and ideographic, Devanagari danda, Arabic,
# Armenian, Ethiopic, Myanmar, Urdu/Syriac; plus the ellipsis and the interrobang family.
TERMINAL_PUNCTUATION = tuple(".!?…‼⁇⁈⁉。！？．｡।॥؟۔։።፧፨။܁܂")


@dataclass(frozen=True)
class FineWebQualityConfig:
    line_punct_thr: float = 0.12
    line_punct_exclude_zero: bool = False
    short_line_thr: float = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.01
    new_line_ratio: float = 0.3


def fineweb_quality(text: str, c: FineWebQualityConfig = FineWebQualityConfig()) -> str | None:
    v = view(text)
    lines = [line for line in v.lines if line.strip()]
    if not lines:
        return "fineweb_empty"
    ratio = sum(1 for line in lines if line.endswith(TERMINAL_PUNCTUATION)) / len(lines)
    if ratio < c.line_punct_thr and not (ratio == 0 and c.line_punct_exclude_zero):
        return "fineweb_line_punct_ratio"
    if sum(1 for line in lines if len(line) <= c.short_line_length) / len(lines) > c.short_line_thr:
        return "fineweb_short_line_ratio"
    _, repeated_chars = duplicate_count_and_chars(lines)
    if repeated_chars / max(1, len(text) - text.count("\n")) > c.char_duplicates_ratio:
        return "fineweb_char_dup_ratio"
    if text.count("\n") / max(1, len(v.tokens)) > c.new_line_ratio:
        return "fineweb_list_ratio"
    return None
