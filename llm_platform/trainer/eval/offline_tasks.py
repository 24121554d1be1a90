"""Our offline benchmarks as lm-eval tasks: MMLU (a group of 57 subjects, or single subjects) and HellaSwag here;
`offline_task` also reaches the tasks built from lm-eval's own configs (`stock_offline`: TruthfulQA MC1/MC2, GSM8K,
BBH, MMLU-Pro) and our generative tasks (`generative_tasks`: HumanEval, SQuAD, FLORES-200, summarisation).

They are built as lm-eval `ConfigurableTask` objects over records read from `eval.data_dir`, so lm-eval does the
prompting, few-shot sampling and scoring exactly as for its own tasks; only where the documents come from differs.

Prompts follow the published formats. MMLU (Hendrycks et al.): a one-line description naming the subject, the question,
the lettered options and "Answer:", scored as the log-likelihood of " A" .. " D"; few-shot examples are the first of the
subject's dev split. HellaSwag (Zellers et al.): the context, scored as the log-likelihood of each ending, reported as
acc and acc_norm (log-likelihood per character). The HellaSwag text file here is the derived version with
activity label and context already joined and preprocessed.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from .benchmark_files import HELLASWAG_FILE, LETTERS, benchmark_file, mmlu_file, read_hellaswag, read_mmlu
from .task_building import ConfigurableTask, DatasetDict, Group, build_task, group, splits
from .task_names import FLORES_NAME, GROUPS, MMLU_SUBJECTS

VERSION = 1.0
ACC = {"metric": "acc", "aggregation": "mean", "higher_is_better": True}
ACC_NORM = {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}


def _mmlu_docs(data_dir: str, subject: str, **_lm_eval_metadata) -> DatasetDict:
    return splits(
        test=read_mmlu(mmlu_file(data_dir, subject, "test")), dev=read_mmlu(mmlu_file(data_dir, subject, "dev"))
    )


def mmlu_prompt(doc: dict) -> str:
    options = "".join(f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, doc["choices"], strict=True))
    return f"{doc['question'].strip()}{options}\nAnswer:"


def mmlu_subject(data_dir: str | Path, subject: str) -> ConfigurableTask:
    """One subject, zero-shot by default; `num_fewshot` draws the first dev questions as examples."""
    return build_task(
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
    return group("mmlu", [mmlu_subject(data_dir, subject) for subject in MMLU_SUBJECTS], "acc", "none", VERSION)


def _hellaswag_docs(data_dir: str, **_lm_eval_metadata) -> DatasetDict:
    return splits(validation=read_hellaswag(benchmark_file(data_dir, HELLASWAG_FILE)))


def hellaswag(data_dir: str | Path) -> ConfigurableTask:
    """The 10,042 validation items, zero-shot by default; the file holds no training split, so `num_fewshot` draws
    examples from the other validation items (lm-eval leaves the item being scored out)."""
    return build_task(
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
    """The task or group for an offline name (`task_names.resolve(name).offline`)."""
    from . import generative_tasks, safety_tasks, stock_offline, tool_use

    builders = {
        "mmlu": mmlu,
        "hellaswag": hellaswag,
        "truthfulqa_mc1": partial(stock_offline.truthfulqa, variant="mc1"),
        "truthfulqa_mc2": partial(stock_offline.truthfulqa, variant="mc2"),
        "truthfulqa_gen": stock_offline.truthfulqa_gen,
        "bbq": stock_offline.bbq,
        "gsm8k": partial(stock_offline.gsm8k, cot=False),
        "gsm8k_cot": partial(stock_offline.gsm8k, cot=True),
        "bbh_cot_fewshot": stock_offline.bbh,
        "mmlu_pro": stock_offline.mmlu_pro,
        "humaneval": partial(generative_tasks.humaneval, sampled=False),
        "humaneval_sampled": partial(generative_tasks.humaneval, sampled=True),
        "squad": generative_tasks.squad,
        "summarization": generative_tasks.summarization,
        "bfcl_simple": tool_use.bfcl_simple,
        "redteam": safety_tasks.redteam,
    }
    if name in builders:
        return builders[name](data_dir)
    if name in GROUPS["mmlu"]:
        return mmlu_subject(data_dir, name.removeprefix("mmlu_"))
    if name in GROUPS["bbh_cot_fewshot"]:
        return stock_offline.bbh_task(data_dir, name.removeprefix("bbh_cot_fewshot_"))
    if name in GROUPS["mmlu_pro"]:
        return stock_offline.mmlu_pro_category(data_dir, name.removeprefix("mmlu_pro_"))
    if match := FLORES_NAME.fullmatch(name):
        return generative_tasks.flores(data_dir, *match.groups())
    raise ValueError(f"{name} is not one of our offline tasks")
