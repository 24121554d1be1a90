import random

import numpy as np
import pytest

from llm_platform.trainer.data.classifier import ClassifierConfig, ClassifierStep, HashedNgramClassifier
from llm_platform.trainer.data.document import Document, Drop

from .conftest import squad_paragraphs, stdlib_code


def _labelled() -> tuple[list[str], list[str]]:
    """Wikipedia prose ('hq') against source code and word-shuffled prose ('lq'), shuffled together."""
    rng = random.Random(0)
    wiki = squad_paragraphs(min_words=40)
    shuffled = []
    for p in wiki[:300]:
        words = p.split()
        rng.shuffle(words)
        shuffled.append(" ".join(words))
    code = [c[:3000] for c in stdlib_code(300)]
    low = code + shuffled
    texts = wiki[300 : 300 + len(low)] + low
    labels = ["hq"] * len(low) + ["lq"] * len(low)
    pairs = list(zip(texts, labels, strict=True))
    rng.shuffle(pairs)
    return [t for t, _ in pairs], [label for _, label in pairs]


def test_learns_prose_against_code_and_word_salad(tmp_path):
    texts, labels = _labelled()
    cut = int(0.7 * len(texts))
    model = HashedNgramClassifier(["hq", "lq"], buckets=1 << 18).fit(texts[:cut], labels[:cut])
    scores = model.score(texts[cut:], "hq")
    accuracy = np.mean([(s > 0.5) == (y == "hq") for s, y in zip(scores, labels[cut:], strict=True)])
    assert accuracy >= 0.95
    model.save(tmp_path / "quality.npz")
    loaded = HashedNgramClassifier.load(tmp_path / "quality.npz")
    assert np.allclose(loaded.predict_proba(texts[:20]), model.predict_proba(texts[:20]))


def test_step_drops_low_scores_and_records_the_score(tmp_path):
    texts, labels = _labelled()
    HashedNgramClassifier(["hq", "lq"], buckets=1 << 18).fit(texts, labels).save(tmp_path / "q.npz")
    step = ClassifierStep(ClassifierConfig(model=str(tmp_path / "q.npz"), label="hq", min_score=0.5))
    prose, code = squad_paragraphs(min_words=40)[1000], stdlib_code(300)[-1]
    kept, dropped = step.process_batch([Document("p", prose, "s"), Document("c", code, "s")])
    assert kept.meta["hq_score"] > 0.5 and dropped == Drop("hq_score_low")


def test_bad_labels_and_missing_models_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="at least two distinct labels"):
        HashedNgramClassifier(["only"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        HashedNgramClassifier.load(tmp_path / "none.npz")
    with pytest.raises(ValueError, match="label 'x' is not one of"):
        HashedNgramClassifier(["a", "b"]).score(["text"], "x")
