import pytest

from llm_platform.trainer.data.document import Document, Drop
from llm_platform.trainer.data.language import LanguageConfig, LanguageStep

from .conftest import flores_lines


def _docs(lang: str, n: int, per_doc: int = 3) -> list[Document]:
    lines = flores_lines(lang)
    return [Document(f"{lang}:{i}", " ".join(lines[i : i + per_doc]), "flores") for i in range(0, n * per_doc, per_doc)]


def test_identifies_english_german_and_french_flores_sentences():
    step = LanguageStep(LanguageConfig(keep=(), candidates=("en", "de", "fr", "es", "it", "nl")))
    for lang, code in [("eng_Latn", "en"), ("deu_Latn", "de"), ("fra_Latn", "fr")]:
        results = step.process_batch(_docs(lang, 40))
        assert sum(r.meta["language"] == code for r in results) >= 39


def test_keeps_english_and_names_the_language_it_drops():
    step = LanguageStep(LanguageConfig(keep=("en",), candidates=("en", "de", "fr")))
    results = step.process_batch(_docs("eng_Latn", 20) + _docs("deu_Latn", 20) + _docs("fra_Latn", 20))
    english, german, french = results[:20], results[20:40], results[40:]
    assert all(isinstance(r, Document) and r.meta["language_score"] >= 0.65 for r in english)
    assert {r.reason for r in german} == {"language_de"}
    assert {r.reason for r in french} == {"language_fr"}


def test_low_confidence_is_dropped_with_its_own_reason():
    step = LanguageStep(LanguageConfig(keep=("en",), threshold=0.99, candidates=("en", "de")))
    mixed = Document("m", flores_lines("eng_Latn")[0] + " " + flores_lines("deu_Latn")[0], "flores")
    assert step(mixed) in (Drop("language_unsure"), Drop("language_de"))


def test_unknown_language_code_is_a_clear_error():
    with pytest.raises(ValueError, match="'xx' is not an ISO 639-1 code"):
        LanguageStep(LanguageConfig(keep=("xx",)))
