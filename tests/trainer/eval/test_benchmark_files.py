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


def test_truthfulqa_files_become_the_hub_rows():
    from llm_platform.trainer.eval.benchmark_files import read_truthfulqa_csv, read_truthfulqa_mc

    mc = read_truthfulqa_mc(shared_path("data", "truthfulqa", "mc_task.json"))
    gen = read_truthfulqa_csv(shared_path("data", "truthfulqa", "TruthfulQA.csv"))
    assert len(mc) == len(gen) == 790
    assert mc[0]["mc1_targets"]["labels"][0] == 1 and sum(mc[0]["mc1_targets"]["labels"]) == 1
    assert gen[0]["correct_answers"][0] == "Nothing happens" and gen[0]["incorrect_answers"]


def test_gsm8k_bbh_squad_and_humaneval_hold_the_published_counts():
    from llm_platform.trainer.eval.benchmark_files import read_bbh, read_humaneval, read_jsonl, read_squad
    from llm_platform.trainer.eval.task_names import BBH_TASKS

    data = shared_path("data")
    assert [len(read_jsonl(data / "gsm8k" / f"{s}.jsonl", ("question", "answer"))) for s in ("test", "train")] == [
        1319, 7473,
    ]  # fmt: skip
    assert sum(len(read_bbh(data / "bbh" / "bbh" / f"{task}.json")) for task in BBH_TASKS) == 6511
    squad = read_squad(data / "squad_v1.1" / "dev-v1.1.json")
    assert len(squad) == 10570 and squad[0]["answers"]["text"][0] == "Denver Broncos"
    assert len(read_humaneval(data / "humaneval" / "HumanEval.jsonl.gz")) == 164


def test_a_bad_jsonl_line_and_a_missing_field_name_their_line(tmp_path):
    from llm_platform.trainer.eval.benchmark_files import read_jsonl

    path = tmp_path / "x.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n{"question": "q"}\n')
    with pytest.raises(BenchmarkDataError, match=r"x.jsonl:2: missing field\(s\) answer"):
        read_jsonl(path, ("question", "answer"))
    path.write_text('{"question": "q", "answer": "a"}\n{not json\n')
    with pytest.raises(BenchmarkDataError, match=r"x.jsonl:2: not valid JSON"):
        read_jsonl(path, ("question", "answer"))


def test_truthfulqa_targets_must_be_labelled_0_or_1(tmp_path):
    from llm_platform.trainer.eval.benchmark_files import read_truthfulqa_mc

    path = tmp_path / "mc.json"
    path.write_text('[{"question": "q", "mc1_targets": {"a": 1, "b": 2}, "mc2_targets": {"a": 1}}]')
    with pytest.raises(BenchmarkDataError, match="question 0: answer targets must map answer text to 0 or 1"):
        read_truthfulqa_mc(path)


def test_mmlu_pro_files_may_be_jsonl_or_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from llm_platform.trainer.eval.benchmark_files import find_table, read_table

    rows = [{"question": "q", "options": ["a", "b"], "answer": "A", "cot_content": "", "category": "law"}]
    (tmp_path / "mmlu_pro").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "mmlu_pro" / "test.parquet")
    assert read_table(find_table(tmp_path, "mmlu_pro/test"), ("question", "options")) == rows
    with pytest.raises(BenchmarkDataError, match=r"mmlu_pro/validation.jsonl \(or .json, .parquet\) does not exist"):
        find_table(tmp_path, "mmlu_pro/validation")
