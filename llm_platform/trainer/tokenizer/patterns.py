"""Pre-tokenization regexes: the split of text into pieces before BPE merges run inside each piece.

The pattern decides what a token can span (never across a letter/digit/punctuation boundary, at most three digits),
so it is part of the vocabulary's identity: tiktoken, HF `tokenizers` and our files all store it next to the ranks.
"""

from __future__ import annotations

LLAMA3 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""Llama 3's pattern, the same as GPT-4's cl100k_base: the default for new vocabularies."""

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
"""GPT-2's pattern (tiktoken's r50k_base/p50k_base); HF's ByteLevel(use_regex=True) applies exactly this one."""

O200K = "|".join(
    [
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"\p{N}{1,3}",
        r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
        r"\s*[\r\n]+",
        r"\s+(?!\S)",
        r"\s+",
    ]
)
"""GPT-4o's o200k_base pattern: splits camelCase and keeps contractions with their word."""

NAMED_PATTERNS = {"llama3": LLAMA3, "cl100k": LLAMA3, "gpt4": LLAMA3, "gpt2": GPT2, "o200k": O200K}


def resolve_pattern(pattern: str | None) -> str:
    """Return the regex for a pattern name (`llama3`, `gpt2`, `o200k`...) or the regex itself; None means Llama 3."""
    if pattern is None:
        return LLAMA3
    if pattern in NAMED_PATTERNS:
        return NAMED_PATTERNS[pattern]
    if not pattern:
        raise ValueError(f"pattern must be a regex or one of {sorted(NAMED_PATTERNS)}, got an empty string")
    return pattern
