"""`eval.tasks` through lm-eval: names to tasks, the MMLU group's average, and the headline metric names."""

from __future__ import annotations

import pytest

from llm_platform.trainer.eval.benchmark_files import BenchmarkDataError
from llm_platform.trainer.eval.benchmarks import headline_metrics, run_tasks, task_list
from llm_platform.trainer.eval.task_names import MMLU_SUBJECTS
from tests.conftest import shared_path

pytest.importorskip("lm_eval", reason="the lm-eval tests need the eval extra: pip install 'llm-platform[eval]'")


def test_mmlu_group_averages_its_57_subjects(ours):
    results = run_tasks(ours, ["mmlu"], data_dir=shared_path("data"), limit=1)["results"]
    subjects = [results[f"mmlu_{subject}"]["acc,none"] for subject in MMLU_SUBJECTS]
    assert results["mmlu"]["acc,none"] == pytest.approx(sum(subjects) / 57)  # one question each: equal weights
    assert headline_metrics({"results": results}, ["mmlu"]) == {"mmlu_acc": round(results["mmlu"]["acc,none"], 4)}


def test_headline_names_carry_the_filter_when_there_is_one():
    results = {
        "gsm8k": {"alias": "gsm8k", "exact_match,strict-match": 0.25, "exact_match_stderr,strict-match": 0.01},
        "hellaswag": {"alias": "hellaswag", "acc,none": 0.3, "acc_norm,none": 0.31, "acc_stderr,none": 0.02},
    }
    assert headline_metrics({"results": results}, ["lm-eval:gsm8k", "hellaswag"]) == {
        "gsm8k_exact_match_strict_match": 0.25,
        "hellaswag_acc": 0.3,
        "hellaswag_acc_norm": 0.31,
    }


def test_stock_names_go_to_lm_eval_as_they_are():
    """lm-eval's TaskManager resolves these (and downloads their data from the hub, which this machine cannot)."""
    assert task_list(["arc_easy", "lm-eval:hellaswag"], None) == ["arc_easy", "hellaswag"]


def test_offline_tasks_without_a_data_dir_say_what_to_set():
    with pytest.raises(ValueError, match="eval.data_dir: the offline tasks hellaswag read local benchmark files"):
        task_list(["hellaswag"], None)


def test_a_data_dir_without_the_files_names_the_missing_file(tmp_path):
    with pytest.raises(BenchmarkDataError, match=f"{tmp_path}/hellaswag/hellaswag_val_full.txt.bz2 does not exist"):
        task_list(["hellaswag"], tmp_path)
