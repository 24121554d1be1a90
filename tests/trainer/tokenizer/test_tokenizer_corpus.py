import gzip

import pytest

from llm_platform.trainer.tokenizer import iter_texts


def test_globs_expand_recursively_and_in_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.txt").write_text("first\n")
    (tmp_path / "b" / "c.txt").write_text("second\n")
    assert list(iter_texts(str(tmp_path / "**" / "*.txt"))) == ["first\n", "second\n"]


def test_jsonl_and_gzip_jsonl_yield_the_field(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "one"}\n\n{"text": "two"}\n')
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as handle:
        handle.write('{"text": "three"}\n')
    assert list(iter_texts([tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"])) == ["one", "two", "three"]


def test_jsonl_record_without_the_field_names_file_and_line(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "one"}\n{"body": "two"}\n')
    with pytest.raises(ValueError, match=r"a\.jsonl:2: field 'text'"):
        list(iter_texts(tmp_path / "a.jsonl"))


def test_non_utf8_file_is_an_error_unless_skipped_or_replaced(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    (tmp_path / "ok.txt").write_text("fine\n")
    sources = [tmp_path / "latin1.txt", tmp_path / "ok.txt"]
    with pytest.raises(ValueError, match="latin1.txt is not UTF-8"):
        list(iter_texts(sources))
    assert list(iter_texts(sources, on_decode_error="skip")) == ["fine\n"]
    assert list(iter_texts(sources, on_decode_error="replace")) == ["caf\ufffd\n", "fine\n"]


def test_a_directory_asks_for_a_glob(tmp_path):
    with pytest.raises(IsADirectoryError, match=r"\*\*/\*\.txt"):
        list(iter_texts(tmp_path))


def test_long_files_come_in_chunks_that_rejoin_to_the_file(tmp_path):
    text = "".join(f"line {i} ünïcødé\n" for i in range(20_000))
    (tmp_path / "big.txt").write_text(text, encoding="utf-8")
    chunks = list(iter_texts(tmp_path / "big.txt"))
    assert len(chunks) > 1 and "".join(chunks) == text
