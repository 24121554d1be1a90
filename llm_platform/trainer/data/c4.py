"""The C4 cleaning rules (Raffel et al. 2020, section 2.2), as the T5 team's `c4_utils` applies them.

Line rules remove lines (no terminal punctuation, too few words, a giant word, "javascript", cookie/terms notices);
document rules drop the page ("lorem ipsum", a curly bracket, fewer than five sentences left). So this step rewrites
the text as well as filtering it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .document import Document, Drop

_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
_TERMINAL = (".", "?", "!", '"', "'")
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)")
POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


@dataclass(frozen=True)
class C4Config:
    """The C4 rules; each can be turned off. Counts of -1 disable a count rule."""

    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    min_num_sentences: int = 5
    min_words_per_line: int = 3
    max_word_length: int = 1000
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True


def c4_clean(text: str, c: C4Config = C4Config()) -> str | Drop:
    """The text with C4's rejected lines removed, or a `Drop` when C4 rejects the whole page."""
    sentences = 0
    kept: list[str] = []
    for raw in text.split("\n"):
        line = raw.strip()
        words = line.split()
        too_long = c.max_word_length != -1 and len(line) > c.max_word_length
        if too_long and any(len(w) > c.max_word_length for w in words):
            continue
        if c.remove_citations and "[" in line:
            line = _CITATION.sub("", line)
        if c.filter_no_terminal_punct and (not line.endswith(_TERMINAL) or line.endswith("...")):
            continue
        if len(words) < c.min_words_per_line:
            continue
        lower = line.lower()
        if c.filter_lorem_ipsum and "lorem ipsum" in lower:
            return Drop("c4_lorem_ipsum")
        if c.filter_javascript and "javascript" in lower:
            continue
        if c.filter_curly_bracket and "{" in line:
            return Drop("c4_curly_bracket")
        if c.filter_policy and any(p in lower for p in POLICY_PHRASES):
            continue
        if c.min_num_sentences != -1:
            sentences += max(1, len(_SENTENCE_END.findall(line)))
        kept.append(line)
    if c.min_num_sentences != -1 and sentences < c.min_num_sentences:
        return Drop("c4_too_few_sentences")
    return "\n".join(kept).strip()


class C4Step:
    name = "c4"

    def __init__(self, config: C4Config = C4Config()):
        self.config = config

    def __call__(self, doc: Document) -> Document | Drop:
        result = c4_clean(doc.text, self.config)
        return result if isinstance(result, Drop) else doc.with_text(result)
