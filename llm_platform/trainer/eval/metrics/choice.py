"""Multiple-choice accuracy from per-choice log-likelihoods, raw and normalised by length, as lm-eval scores `acc`
and `acc_norm`: the length is the choice's character count, so tokenisers do not change which choice wins."""

from __future__ import annotations

from collections.abc import Sequence


def choice_correct(loglikelihoods: Sequence[float], choices: Sequence[str], gold: int) -> dict[str, bool]:
    """Whether the most likely choice is `gold`, by total log-likelihood (acc) and per character (acc_norm); ties go
    to the first choice, as `numpy.argmax` breaks them."""
    if len(loglikelihoods) != len(choices) or not choices:
        raise ValueError(f"{len(loglikelihoods)} log-likelihoods for {len(choices)} choices; give one per choice")
    if not 0 <= gold < len(choices):
        raise ValueError(f"gold index {gold} is outside the {len(choices)} choices")
    per_char = [ll / max(1, len(choice)) for ll, choice in zip(loglikelihoods, choices, strict=True)]
    return {"acc": _argmax(loglikelihoods) == gold, "acc_norm": _argmax(per_char) == gold}


def choice_accuracy(
    loglikelihoods: Sequence[Sequence[float]], choices: Sequence[Sequence[str]], golds: Sequence[int]
) -> dict[str, float]:
    """{"acc", "acc_norm"} over questions (fractions, 0-1, as lm-eval reports them)."""
    if not len(loglikelihoods) == len(choices) == len(golds) or not golds:
        raise ValueError("give one list of log-likelihoods, one list of choices and one gold index per question")
    marks = [choice_correct(ll, c, g) for ll, c, g in zip(loglikelihoods, choices, golds, strict=True)]
    return {key: sum(mark[key] for mark in marks) / len(marks) for key in ("acc", "acc_norm")}


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))
