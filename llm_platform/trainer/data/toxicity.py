"""Toxic and obscene content: a word list (C4 drops any page with a listed word) and, optionally, a classifier
score (Dolma drops documents a Jigsaw-trained classifier scores above 0.4).

The built-in list is deliberately short: English profanity, sexual terms and slurs without an innocent common
meaning (no "tits", "dyke" or "retard", which birds, dams and physics use). Pass a longer list, e.g. LDNOOBW's, as
`word_list` (a file of one word or phrase per line). A `*` after a stem matches any ending ("fuck*": "fucking").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .classifier import HashedNgramClassifier
from .document import Document, Drop

BUILTIN_WORDS = (
    "fuck*", "motherfuck*", "shit", "shits", "shitty", "bullshit", "bitch", "bitches", "cunt*", "asshole*",
    "bastard*", "whore*", "slut*", "dickhead*", "cocksuck*", "wanker*", "twat*", "dildo*", "blowjob*", "blow job*",
    "handjob*", "jerk off", "jack off", "cumshot*", "cum shot*", "gangbang*", "porn*", "hentai", "milf", "rimjob*",
    "deepthroat*", "bukkake", "titties", "nsfw", "nigger*", "nigga*", "faggot*", "kike*", "spic", "spics",
    "wetback*", "tranny", "trannies", "raghead*", "towelhead*", "gook*",
)  # fmt: skip


def compile_word_list(words: tuple[str, ...]) -> re.Pattern[str]:
    """One case-insensitive regex over whole words and phrases; `stem*` matches the stem with any word ending."""
    parts = []
    for word in sorted({w.strip().lower() for w in words if w.strip()}, key=len, reverse=True):
        stem = word.rstrip("*")
        body = r"\s+".join(re.escape(piece) for piece in stem.split())
        parts.append(body + (r"\w*" if word.endswith("*") else ""))
    return re.compile(r"\b(?:" + "|".join(parts) + r")\b", re.IGNORECASE)


@lru_cache(maxsize=8)
def _pattern(word_list: str | None, builtin: bool) -> re.Pattern[str]:
    words = BUILTIN_WORDS if builtin else ()
    if word_list:
        path = Path(word_list)
        if not path.is_file():
            raise FileNotFoundError(f"toxicity.word_list: {path} does not exist (one word or phrase per line)")
        words += tuple(path.read_text(encoding="utf-8").splitlines())
    if not words:
        raise ValueError("toxicity: no words to look for; keep `builtin_words` or give a `word_list`")
    return compile_word_list(words)


def bad_words(text: str, word_list: str | None = None, builtin: bool = True) -> list[str]:
    """The listed words and phrases found in the text, in order."""
    return _pattern(word_list, builtin).findall(text)


@dataclass(frozen=True)
class ToxicityConfig:
    """The `toxicity` filter: drop a page with more than `max_bad_words` listed words (C4: any), or whose toxicity
    classifier score is above `max_score`."""

    max_bad_words: int = 0
    builtin_words: bool = True
    word_list: str | None = None
    classifier: str | None = None
    label: str = "toxic"
    max_score: float = 0.4


class ToxicityStep:
    name = "toxicity"

    def __init__(self, config: ToxicityConfig = ToxicityConfig()):
        self.config = config
        self.pattern = _pattern(config.word_list, config.builtin_words)
        self.model = HashedNgramClassifier.load(config.classifier) if config.classifier else None
        if self.model is not None:
            self.model.label_index(config.label)

    def __call__(self, doc: Document) -> Document | Drop:
        return self.process_batch([doc])[0]

    def process_batch(self, docs: list[Document]) -> list[Document | Drop]:
        c = self.config
        scores = self.model.score([d.text for d in docs], c.label).tolist() if self.model else [None] * len(docs)
        out: list[Document | Drop] = []
        for doc, score in zip(docs, scores, strict=True):
            if len(self.pattern.findall(doc.text)) > c.max_bad_words:
                out.append(Drop("toxicity_bad_words"))
            elif score is not None and score > c.max_score:
                out.append(Drop("toxicity_score"))
            else:
                out.append(doc if score is None else doc.with_meta(toxicity_score=round(score, 4)))
        return out
