"""BLEU and chrF equal the sacrebleu command line on real FLORES-200 pairs; ROUGE equals rouge-score's scorer pair by
pair, on FLORES sentences and on (lead sentence, paragraph) pairs of SQuAD articles."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llm_platform.trainer.eval.metrics import bleu, chrf, rouge
from tests.conftest import shared_path

N = 200


def flores(language: str) -> list[str]:
    return (shared_path("data", "flores200", "dev") / f"{language}_Latn.dev").read_text(encoding="utf-8").splitlines()


def dropped_words(line: str) -> str:
    """A plausible, imperfect hypothesis: every fourth word left out."""
    return " ".join(word for i, word in enumerate(line.split()) if i % 4 != 3)


def sacrebleu_cli(tmp_path, hyps: list[str], *refs: list[str]) -> tuple[float, float]:
    """(BLEU, chrF) from `python -m sacrebleu REF... -i HYP -b`: the files route, independent of our calls."""
    names = []
    for i, lines in enumerate([hyps, *refs]):
        path = tmp_path / f"{i}.txt"
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        names.append(str(path))
    out = subprocess.run(
        [sys.executable, "-m", "sacrebleu", *names[1:], "-i", names[0], "-m", "bleu", "chrf", "-b", "-f", "text"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return float(out[0]), float(out[1])


@pytest.mark.parametrize(
    "pairing",
    ["german-vs-english", "dropped-words", "two-references"],
)
def test_bleu_and_chrf_equal_sacrebleus_cli(tmp_path, pairing):
    english, german = flores("eng")[:N], flores("deu")[:N]
    if pairing == "german-vs-english":
        hyps, refs = german, [english]
    elif pairing == "dropped-words":
        hyps, refs = [dropped_words(line) for line in english], [english]
    else:
        hyps, refs = [dropped_words(line) for line in english], [english[1:] + english[:1], english]
    expected_bleu, expected_chrf = sacrebleu_cli(tmp_path, hyps, *refs)
    per_item = [list(item) for item in zip(*refs, strict=True)]
    assert round(bleu(hyps, per_item), 1) == expected_bleu  # the CLI prints one decimal
    assert round(chrf(hyps, per_item), 1) == expected_chrf
    if pairing == "dropped-words":
        assert 30 < expected_bleu < 90  # a real middle-of-the-range score, not 0 or 100


def reference_rouge(hyps: list[str], refs: list[str]) -> dict[str, float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, hyp) for hyp, ref in zip(hyps, refs, strict=True)]
    return {name: 100 * sum(s[name].fmeasure for s in scores) / len(scores) for name in ("rouge1", "rouge2", "rougeL")}


def squad_lead_pairs(n: int) -> tuple[list[str], list[str]]:
    """(first sentence, whole paragraph) of SQuAD dev paragraphs: an extractive "lead" summary and its document."""
    data = json.loads(shared_path("data", "squad_v1.1", "dev-v1.1.json").read_text(encoding="utf-8"))["data"]
    contexts = [p["context"] for article in data for p in article["paragraphs"]][:n]
    return [context.split(". ")[0] for context in contexts], contexts


def test_rouge_equals_rouge_score_on_lead_summaries():
    hyps, refs = squad_lead_pairs(60)
    ours = rouge(hyps, refs)
    assert ours == pytest.approx(reference_rouge(hyps, refs), abs=1e-9)
    assert 0 < ours["rouge2"] < ours["rouge1"] < 100


def test_rouge_equals_rouge_score_on_flores_sentences():
    english = flores("eng")[:N]
    hyps = [dropped_words(line) for line in english]
    assert rouge(hyps, english) == pytest.approx(reference_rouge(hyps, english), abs=1e-9)


def test_rouge_with_several_references_takes_the_best():
    hyp = "the cat sat on the mat"
    single = rouge([hyp], ["a dog ran"])["rouge1"]
    assert rouge([hyp], [["a dog ran", hyp]])["rouge1"] == 100 > single


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        rouge(["a", "b"], ["a"])
