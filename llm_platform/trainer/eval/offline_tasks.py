"""Our offline benchmarks as lm-eval tasks: MMLU (a group of 57 subjects, or single subjects) and HellaSwag.

They are built as lm-eval `ConfigurableTask` objects over records read from `eval.data_dir`, so lm-eval does the
prompting, few-shot sampling and scoring exactly as for its own tasks; only where the documents come from differs.

Prompts follow the published formats. MMLU (Hendrycks et al.): a one-line description naming the subject, the question,
the lettered options and "Answer:", scored as the log-likelihood of " A" .. " D"; few-shot examples are the first of the
subject's dev split. HellaSwag (Zellers et al.): the context, scored as the log-likelihood of each ending, reported as
acc and acc_norm (log-likelihood per character). The HellaSwag text file here is the derived version with
activity label and context already joined and preprocessed.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

from .benchmark_files import HELLASWAG_FILE, LETTERS, benchmark_file, mmlu_file, read_hellaswag, read_mmlu
from .task_names import LM_EVAL_MISSING, MMLU_SUBJECTS

try:
    import datasets
    from lm_eval.api.group import Group
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.config.group import AggMetricConfig
except ImportError as error:  # the `eval` extra is optional
    raise ImportError(LM_EVAL_MISSING) from error

VERSION = 1.0
ACC = {"metric": "acc", "aggregation": "mean", "higher_is_better": True}
ACC_NORM = {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}


class _NoMetadataHint(logging.Filter):
    """lm-eval suggests `--metadata` for every task built on a custom dataset (57 times for MMLU); ours take none."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Custom kwargs can be passed" not in record.getMessage()


def _task(config: dict) -> ConfigurableTask:
    """A task built from `config`, which reads its documents at once (a missing file shows here)."""
    log, quiet = logging.getLogger(ConfigurableTask.__module__), _NoMetadataHint()
    log.addFilter(quiet)
    try:
        return ConfigurableTask(config=config)
    finally:
        log.removeFilter(quiet)


def _splits(**records: list[dict]) -> datasets.DatasetDict:
    return datasets.DatasetDict({name: datasets.Dataset.from_list(rows) for name, rows in records.items()})


def _mmlu_docs(data_dir: str, subject: str, **_lm_eval_metadata) -> datasets.DatasetDict:
    return _splits(
        test=read_mmlu(mmlu_file(data_dir, subject, "test")), dev=read_mmlu(mmlu_file(data_dir, subject, "dev"))
    )


def mmlu_prompt(doc: dict) -> str:
    options = "".join(f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, doc["choices"], strict=True))
    return f"{doc['question'].strip()}{options}\nAnswer:"


def mmlu_subject(data_dir: str | Path, subject: str) -> ConfigurableTask:
    """One subject, zero-shot by default; `num_fewshot` draws the first dev questions as examples."""
    return _task(
        {
            "task": f"mmlu_{subject}",
            "custom_dataset": partial(_mmlu_docs, str(data_dir), subject),
            "test_split": "test",
            "fewshot_split": "dev",
            "fewshot_config": {"sampler": "first_n"},
            "output_type": "multiple_choice",
            "description": f"The following are multiple choice questions (with answers) about "
            f"{subject.replace('_', ' ')}.\n\n",
            "doc_to_text": mmlu_prompt,
            "doc_to_choice": list(LETTERS),
            "doc_to_target": "answer",
            "metric_list": [dict(ACC)],
            "metadata": {"version": VERSION},
        }
    )


def mmlu(data_dir: str | Path) -> Group:
    """All 57 subjects; the group's acc is the mean over questions (each subject weighted by its size)."""
    group = Group(
        name="mmlu",
        aggregate_metric_list=[AggMetricConfig(metric="acc", filter_list=["none"], weight_by_size=True)],
        metadata={"version": VERSION},
    )
    for subject in MMLU_SUBJECTS:
        group.add(mmlu_subject(data_dir, subject))
    return group


def _hellaswag_docs(data_dir: str, **_lm_eval_metadata) -> datasets.DatasetDict:
    return _splits(validation=read_hellaswag(benchmark_file(data_dir, HELLASWAG_FILE)))


def hellaswag(data_dir: str | Path) -> ConfigurableTask:
    """The 10,042 validation items, zero-shot by default; the file holds no training split, so `num_fewshot` draws
    examples from the other validation items (lm-eval leaves the item being scored out)."""
    return _task(
        {
            "task": "hellaswag",
            "custom_dataset": partial(_hellaswag_docs, str(data_dir)),
            "test_split": "validation",
            "output_type": "multiple_choice",
            "doc_to_text": "context",
            "doc_to_choice": "endings",
            "doc_to_target": "label",
            "metric_list": [dict(ACC), dict(ACC_NORM)],
            "metadata": {"version": VERSION},
        }
    )


def offline_task(name: str, data_dir: str | Path) -> ConfigurableTask | Group:
    """The task or group for one of `task_names.OFFLINE_TASKS`."""
    if name == "mmlu":
        return mmlu(data_dir)
    if name == "hellaswag":
        return hellaswag(data_dir)
    return mmlu_subject(data_dir, name.removeprefix("mmlu_"))
