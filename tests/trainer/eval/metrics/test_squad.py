"""SQuAD v1.1 EM/F1 on the official dev set: gold answers score 100/100, and perturbed answers score what the official
script's formula gives, written out here independently of the module under test."""

from __future__ import annotations

import json
import random
import re
import string
from collections import Counter

import pytest

from llm_platform.trainer.eval.metrics import exact_match, normalize_answer, squad_f1, squad_scores
from tests.conftest import shared_path


def official_normalize(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def official_f1(prediction: str, truth: str) -> float:
    p, t = official_normalize(prediction).split(), official_normalize(truth).split()
    common = Counter(p) & Counter(t)
    same = sum(common.values())
    if same == 0:
        return 0
    precision, recall = 1.0 * same / len(p), 1.0 * same / len(t)
    return (2 * precision * recall) / (precision + recall)


def official(predictions: list[str], golds: list[list[str]]) -> dict[str, float]:
    em = f1 = 0.0
    for prediction, truths in zip(predictions, golds, strict=True):
        em += max(official_normalize(prediction) == official_normalize(t) for t in truths)
        f1 += max(official_f1(prediction, t) for t in truths)
    return {"exact_match": 100.0 * em / len(golds), "f1": 100.0 * f1 / len(golds)}


@pytest.fixture(scope="module")
def dev() -> list[list[str]]:
    data = json.loads(shared_path("data", "squad_v1.1", "dev-v1.1.json").read_text(encoding="utf-8"))["data"]
    return [[a["text"] for a in qa["answers"]] for art in data for p in art["paragraphs"] for qa in p["qas"]]


def test_gold_answers_score_100_100_on_the_whole_dev_set(dev):
    assert len(dev) == 10570
    assert squad_scores([answers[0] for answers in dev], dev) == {"exact_match": 100.0, "f1": 100.0}


def perturb(answer: str, rng: random.Random) -> str:
    words = answer.split()
    kind = rng.randrange(6)
    if kind == 0:
        return "The " + answer.upper() + "!"  # normalises back to the answer
    if kind == 1 and len(words) > 1:
        return " ".join(words[1:])
    if kind == 2:
        return answer + " and " + rng.choice(["more", "the rest", "so on"])
    if kind == 3:
        return " ".join(reversed(words))
    if kind == 4:
        return "an answer about " + words[-1]
    return "unrelated"


def test_perturbed_answers_score_as_the_official_formula(dev):
    """Every fifth question of the dev set (2,114), each answered with a perturbed reference answer."""
    rng = random.Random(13)
    golds = dev[::5]
    predictions = [perturb(answers[rng.randrange(len(answers))], rng) for answers in golds]
    ours = squad_scores(predictions, golds)
    assert ours == pytest.approx(official(predictions, golds), abs=1e-9)
    assert 10 < ours["exact_match"] < ours["f1"] < 90
    for prediction, answers in list(zip(predictions, golds, strict=True))[:300]:
        assert squad_f1(prediction, answers) == pytest.approx(max(official_f1(prediction, t) for t in answers))


def test_normalisation_drops_case_punctuation_articles_and_spaces():
    assert normalize_answer("  The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert exact_match("Theatre", ["the atre"]) == 0.0  # articles only as whole words


def test_answers_must_be_a_list():
    with pytest.raises(ValueError, match="non-empty list of reference strings"):
        squad_f1("x", "x")
