"""Pre-tokenization regexes: the split of text into pieces before BPE merges run inside each piece.

The pattern decides what a token can span (never across a letter/digit/punctuation boundary, at most three digits),
so it is part of the vocabulary's identity: tiktoken, HF `tokenizers` and our files all store it next to the ranks.

A user names a pattern (`llama3`, `gpt2`, `o200k`...) or writes a regex of their own behind an explicit `regex:`
prefix. A bare string that is not a known name is refused, never taken as a regex: `gpt-2` read as a regex matches
only the text "gpt-2", and would split a megabyte of text into a few dozen tokens without a word of warning.
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


REGEX_PREFIX = "regex:"


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is not a name or a `regex:` regex that compiles, or None. Pure; what validation reports."""
    if pattern in NAMED_PATTERNS:
        return None
    if not pattern.startswith(REGEX_PREFIX):
        return (
            f"unknown pattern {pattern!r}; use one of {', '.join(sorted(NAMED_PATTERNS))}, or write a regex of your "
            f"own as '{REGEX_PREFIX}<regex>'"
        )
    import regex  # tiktoken's own dependency: the \p{L} classes the patterns use need it

    body = pattern.removeprefix(REGEX_PREFIX)
    if not body:
        return f"'{REGEX_PREFIX}' needs a regex after it"
    try:
        regex.compile(body)
    except regex.error as e:
        return f"not a valid regex after '{REGEX_PREFIX}' ({e})"
    return None


def resolve_pattern(pattern: str | None) -> str:
    """The regex for a pattern name (`llama3`, `gpt2`, `o200k`...) or a `regex:<regex>`; None means Llama 3.
    Raises ValueError naming the known names for anything else."""
    if pattern is None:
        return LLAMA3
    problem = pattern_problem(pattern)
    if problem is not None:
        raise ValueError(f"pattern: {problem}")
    return NAMED_PATTERNS.get(pattern) or pattern.removeprefix(REGEX_PREFIX)
