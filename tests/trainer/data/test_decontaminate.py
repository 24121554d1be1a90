import random

from llm_platform.trainer.data.decontaminate import DecontaminationConfig, DecontaminationStep, EvalIndex
from llm_platform.trainer.data.document import Document, Drop

from .conftest import gsm8k_questions, squad_paragraphs


def test_documents_quoting_test_questions_are_dropped_and_others_kept():
    test_questions = gsm8k_questions("test")
    step = DecontaminationStep(EvalIndex(test_questions), DecontaminationConfig())
    rng = random.Random(0)
    paragraphs = squad_paragraphs(min_words=60)[:200]
    leaked = [
        f"{p} Here is a practice problem: {q.upper()}"
        for p, q in zip(paragraphs[:100], rng.sample(test_questions, 100), strict=True)
    ]
    assert all(step(Document(str(i), t, "s")) == Drop("eval_overlap") for i, t in enumerate(leaked))
    clean = [Document(str(i), p, "s") for i, p in enumerate(paragraphs[100:])]
    assert all(isinstance(step(d), Document) for d in clean)


def test_same_domain_training_questions_are_not_mistaken_for_test_questions():
    index = EvalIndex(gsm8k_questions("test"))
    train = gsm8k_questions("train")[:1000]
    assert sum(index.matches(q) > 0 for q in train) <= 10  # a few train questions share 13 words with a test one


def test_short_items_are_matched_whole():
    index = EvalIndex(["Which planet is known as the red planet?", "too short"], ngram=13, min_item_words=5)
    assert index.items == 1
    assert index.matches("Quiz: which planet is known as the Red Planet? Answer: Mars.") == 1
