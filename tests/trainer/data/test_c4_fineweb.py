from llm_platform.trainer.data.c4 import C4Config, c4_clean
from llm_platform.trainer.data.document import Drop
from llm_platform.trainer.data.fineweb import fineweb_quality

from .conftest import gutenberg_chunks, shakespeare_chunks, squad_paragraphs, stdlib_code


def test_c4_keeps_wikipedia_paragraphs_with_five_sentences():
    paras = [p for p in squad_paragraphs(min_words=80) if p.count(". ") >= 5][:200]
    kept = [c4_clean(p) for p in paras]
    # the few drops are C4 doing its job: page-citation suffixes (".:12") and broken lines ("O\\n2") lose sentences
    assert sum(not isinstance(k, Drop) for k in kept) / len(paras) >= 0.9


def test_c4_drops_code_for_curly_brackets_or_too_few_sentences():
    reasons = {r.reason for r in (c4_clean(t) for t in stdlib_code(40)) if isinstance(r, Drop)}
    assert reasons <= {"c4_curly_bracket", "c4_too_few_sentences"} and reasons


def test_c4_removes_lines_and_rejects_pages_as_published():
    para = next(p for p in squad_paragraphs(min_words=80) if p.count(". ") >= 6)
    page = "Main Page\n" + para + "\nPlease enable JavaScript to view the comments."
    assert c4_clean(page) == para
    assert c4_clean(para + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.") == Drop("c4_lorem_ipsum")
    assert c4_clean(para + "\nThe set {1, 2} has two elements.") == Drop("c4_curly_bracket")
    assert c4_clean(para.split(". ")[0] + ".") == Drop("c4_too_few_sentences")
    assert c4_clean(para + "[12]", C4Config(remove_citations=True)) == para


def test_fineweb_keeps_prose_and_drops_verse_and_lists():
    # one-line paragraphs ending in a citation (".:12", "[citation needed]") fail the punctuation rule, as in
    # datatrove (which keeps 175 of these 200)
    prose = squad_paragraphs(min_words=60)[:200] + gutenberg_chunks()[:20]
    assert sum(fineweb_quality(t) is None for t in prose) / len(prose) >= 0.85
    verse = shakespeare_chunks()[:100]  # short lines, most without terminal punctuation
    assert sum(fineweb_quality(t) is not None for t in verse) / len(verse) >= 0.8
    words = squad_paragraphs(min_words=60)[0].split()
    listing = "\n".join(" ".join(words[i : i + 2]) + "." for i in range(0, len(words), 2))
    assert fineweb_quality(listing) in ("fineweb_short_line_ratio", "fineweb_list_ratio")
