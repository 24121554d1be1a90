from llm_platform.trainer.data.dedup import ExactDedup, content_hash, is_validation

from .conftest import squad_paragraphs


def test_exact_dedup_ignores_case_and_whitespace_only():
    dedup = ExactDedup()
    text = squad_paragraphs()[0]
    assert dedup.is_new(text)
    assert not dedup.is_new("  " + text.upper().replace(" ", "\n\t") + "\n")
    assert dedup.is_new(text.replace(".", "!", 1))


def test_validation_split_is_deterministic_and_near_the_fraction():
    paragraphs = squad_paragraphs()
    held_out = [p for p in paragraphs if is_validation(p, 0.1)]
    assert held_out == [p for p in paragraphs if is_validation(p, 0.1)]
    assert 0.08 < len(held_out) / len(paragraphs) < 0.12
    assert not any(is_validation(p, 0.0) for p in paragraphs[:100])
    assert content_hash("a  b") == content_hash("A\nb")
