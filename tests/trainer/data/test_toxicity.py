import random

from llm_platform.trainer.data.classifier import HashedNgramClassifier
from llm_platform.trainer.data.document import Document, Drop
from llm_platform.trainer.data.toxicity import ToxicityConfig, ToxicityStep, bad_words, compile_word_list

from .conftest import shakespeare_chunks, squad_paragraphs


def test_word_list_finds_the_insults_in_shakespeare_and_nothing_in_wikipedia():
    chunks = shakespeare_chunks()
    hits = [c for c in chunks if bad_words(c)]
    assert any("bastard" in w.lower() for c in hits for w in bad_words(c))
    assert 5 <= len(hits) <= 40  # "bastard", "whore"... in a handful of the 558 scenes
    assert sum(bool(bad_words(p)) for p in squad_paragraphs()[:2000]) <= 3


def test_step_drops_pages_with_listed_words_and_keeps_the_rest():
    step = ToxicityStep(ToxicityConfig())
    chunks = shakespeare_chunks()
    flagged = next(c for c in chunks if bad_words(c))
    clean = next(c for c in chunks if not bad_words(c))
    assert step(Document("a", flagged, "s")) == Drop("toxicity_bad_words")
    assert step(Document("b", clean, "s")).text == clean


def test_stems_and_phrases_match_whole_words_only():
    pattern = compile_word_list(("fuck*", "jerk off", "spic"))
    assert pattern.findall("Fucking hell, jerk   off. Spicy food, a spic.") == ["Fucking", "jerk   off", "spic"]


def test_classifier_score_drops_toxic_comments(tmp_path):
    rng = random.Random(0)
    insults = ["idiot", "moron", "loser", "stupid", "pathetic", "worthless", "disgusting", "clown"]
    wiki = squad_paragraphs(min_words=30)
    toxic = [
        f"{' '.join(p.split()[:12])} you are a {rng.choice(insults)} and a {rng.choice(insults)}, shut up"
        for p in wiki[1000:1300]
    ]
    model = HashedNgramClassifier(["toxic", "ok"], buckets=1 << 18)
    model.fit(toxic[:200] + wiki[:200], ["toxic"] * 200 + ["ok"] * 200)
    model.save(tmp_path / "toxicity.npz")
    step = ToxicityStep(ToxicityConfig(classifier=str(tmp_path / "toxicity.npz"), max_score=0.5))
    results = step.process_batch([Document(str(i), t, "s") for i, t in enumerate(toxic[200:] + wiki[400:500])])
    assert sum(r == Drop("toxicity_score") for r in results[:100]) >= 95
    assert sum(isinstance(r, Document) for r in results[100:]) >= 95
