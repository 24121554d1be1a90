"""SQuAD v1.1 exact match and F1 as the official evaluation script defines them.

An answer is normalised (lower case, ASCII punctuation removed, the articles a/an/the removed, whitespace collapsed);
exact match compares the normalised strings, F1 the bags of normalised tokens; a prediction takes its best score over
the question's reference answers.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    guess = normalize_answer(prediction)
    return float(any(guess == normalize_answer(answer) for answer in _checked(answers)))


def _f1(prediction: str, answer: str) -> float:
    guess, gold = normalize_answer(prediction).split(), normalize_answer(answer).split()
    same = sum((Counter(guess) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(guess), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_f1(prediction: str, answers: Sequence[str]) -> float:
    return max(_f1(prediction, answer) for answer in _checked(answers))


def squad_scores(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """{"exact_match", "f1"} averaged over questions, 0-100 as the official script prints them."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} answer lists; give one per question")
    if not predictions:
        raise ValueError("SQuAD scores need at least one question")
    n = len(predictions)
    return {
        "exact_match": 100 * sum(exact_match(p, a) for p, a in zip(predictions, answers, strict=True)) / n,
        "f1": 100 * sum(squad_f1(p, a) for p, a in zip(predictions, answers, strict=True)) / n,
    }


def _checked(answers: Sequence[str]) -> Sequence[str]:
    if isinstance(answers, str) or not answers:
        raise ValueError("answers must be a non-empty list of reference strings")
    return answers
