from llm_platform.trainer.data.clean import CleanConfig, CleanStep, clean_text, fix_mojibake, remove_boilerplate_lines
from llm_platform.trainer.data.document import Document, Drop

from .conftest import flores_lines, gutenberg_chunks


def test_mojibake_of_real_accented_text_is_repaired_exactly():
    for lang in ("fra_Latn", "deu_Latn"):
        for line in flores_lines(lang)[:200]:
            broken = line.encode("utf-8").decode("cp1252", errors="replace")
            if "\ufffd" in broken:  # a byte cp1252 cannot decode: not recoverable by re-encoding
                continue
            assert fix_mojibake(broken) == line


def test_correct_accented_text_is_left_alone():
    lines = flores_lines("fra_Latn")[:300] + flores_lines("deu_Latn")[:300]
    assert [fix_mojibake(line) for line in lines] == lines


def test_boilerplate_lines_are_removed_and_prose_is_kept():
    prose = gutenberg_chunks()[3]
    page = "Skip to main content\n" + prose + "\nWe use cookies to improve your experience.\n© 2024 Example Ltd"
    assert remove_boilerplate_lines(page) == prose
    assert remove_boilerplate_lines(prose) == prose


def test_clean_text_normalises_controls_line_ends_and_blank_runs():
    raw = "Cafe\u0301\r\nline\x00 two \t\n\n\n\nzero\u200bwidth\ufeff"
    assert clean_text(raw) == "Café\nline two\n\nzerowidth"


def test_clean_step_drops_short_documents():
    step = CleanStep(CleanConfig(min_chars=10))
    assert step(Document("a", "  tiny  ", "s")) == Drop("too_short")
    assert step(Document("b", "long enough text", "s")).text == "long enough text"
