"""Reading the offline benchmark files: the real files parse to the published counts; bad files name file and line."""

from __future__ import annotations

import bz2

import pytest

from llm_platform.trainer.eval.benchmark_files import (
    HELLASWAG_FILE,
    BenchmarkDataError,
    benchmark_file,
    mmlu_file,
    read_hellaswag,
    read_mmlu,
)
from llm_platform.trainer.eval.task_names import MMLU_SUBJECTS
from tests.conftest import shared_path


def test_mmlu_files_hold_the_published_question_counts():
    data = shared_path("data")
    counts = {split: sum(len(read_mmlu(mmlu_file(data, s, split))) for s in MMLU_SUBJECTS) for split in ("dev", "test")}
    assert counts == {"dev": 285, "test": 14042}


def test_an_mmlu_row_becomes_question_choices_and_answer_index():
    first = read_mmlu(mmlu_file(shared_path("data"), "anatomy", "test"))[0]
    assert first["question"].startswith("A lesion causing compression of the facial nerve")
    assert first["choices"][0] == "paralysis of the facial muscles."
    assert len(first["choices"]) == 4 and first["answer"] == 0


def test_hellaswag_file_holds_the_validation_items():
    items = read_hellaswag(benchmark_file(shared_path("data"), HELLASWAG_FILE))
    assert len(items) == 10042
    assert items[0]["context"] == "Roof shingle removal: A man is sitting on a roof. he"
    assert items[0]["label"] == 3 and items[0]["endings"][3] == "starts pulling up roofing on a roof."


def test_a_short_mmlu_row_names_file_and_line(tmp_path):
    path = tmp_path / "x_test.csv"
    path.write_text("Q1,a,b,c,d,B\nQ2,a,b,c,D\n")
    with pytest.raises(BenchmarkDataError, match=r"x_test.csv:2: expected 6 columns"):
        read_mmlu(path)


def test_a_bad_hellaswag_label_names_its_line(tmp_path):
    path = tmp_path / "h.txt.bz2"
    path.write_bytes(bz2.compress(b"ctx one\n1\na\nb\nc\nd\nctx two\nfive\na\nb\nc\nd\n"))
    with pytest.raises(BenchmarkDataError, match=r"h.txt.bz2:8: gold label must be 0-3, got 'five'"):
        read_hellaswag(path)


def test_a_truncated_hellaswag_file_is_refused(tmp_path):
    path = tmp_path / "h.txt"
    path.write_text("ctx\n1\na\nb\n")
    with pytest.raises(BenchmarkDataError, match="4 lines; expected 6 per item"):
        read_hellaswag(path)


def test_a_missing_file_names_the_path_and_the_setting(tmp_path):
    with pytest.raises(BenchmarkDataError) as info:
        mmlu_file(tmp_path, "anatomy", "test")
    assert str(info.value).startswith(f"{tmp_path}/mmlu/test/anatomy_test.csv does not exist; eval.data_dir")
