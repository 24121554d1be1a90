"""lm-eval's own tasks with their documents read from `eval.data_dir`: TruthfulQA MC1/MC2 and generation, BBQ,
GSM8K (5-shot, and 8-shot chain of thought with answer extraction), BIG-Bench Hard with the 3-shot chain-of-thought
prompts, and MMLU-Pro.

Each is the config lm-eval ships (prompt template, few-shot exemplars, stop strings, answer-extraction filters,
metrics, version) with `custom_dataset` in place of the hub dataset: the files are read into the rows of the Hugging
Face dataset that config expects, so a result here means what lm-eval's result of the same name means.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from .benchmark_files import (
    benchmark_file,
    find_table,
    read_bbh,
    read_bbq,
    read_jsonl,
    read_table,
    read_truthfulqa_csv,
    read_truthfulqa_mc,
)
from .task_building import ConfigurableTask, DatasetDict, Group, build_task, group, splits, stock_config
from .task_names import BBH_TASKS, MMLU_PRO_CATEGORIES

# the columns of TIGER-Lab/MMLU-Pro that lm-eval's mmlu_pro tasks read
MMLU_PRO_FIELDS = ("question", "options", "answer", "cot_content", "category")


def _truthfulqa_docs(data_dir: str, **_lm_eval_metadata) -> DatasetDict:
    return splits(validation=read_truthfulqa_mc(benchmark_file(data_dir, "truthfulqa/mc_task.json")))


def truthfulqa(data_dir: str | Path, variant: str) -> ConfigurableTask:
    """TruthfulQA MC1 (acc of the single true answer) or MC2 (probability mass on the true answers), zero-shot after
    lm-eval's fixed 6-question QA preamble."""
    config = stock_config(
        f"truthfulqa/truthfulqa_{variant}.yaml", custom_dataset=partial(_truthfulqa_docs, str(data_dir))
    )
    return build_task(config)


def _truthfulqa_gen_docs(data_dir: str, **_lm_eval_metadata) -> DatasetDict:
    return splits(validation=read_truthfulqa_csv(benchmark_file(data_dir, "truthfulqa/TruthfulQA.csv")))


def truthfulqa_gen(data_dir: str | Path) -> ConfigurableTask:
    """TruthfulQA generation: a greedy answer after the same QA preamble, scored by BLEU and ROUGE against the true
    and the false reference answers (max, diff, and acc: closer to a true than to any false answer). lm-eval's
    version leaves BLEURT out too, so these are its numbers."""
    custom = partial(_truthfulqa_gen_docs, str(data_dir))
    return build_task(stock_config("truthfulqa/truthfulqa_gen.yaml", custom_dataset=custom))


def _bbq_docs(data_dir: str, **_lm_eval_metadata) -> DatasetDict:
    folder = Path(data_dir).expanduser() / "bbq" / "data"
    return splits(test=read_bbq(folder))


def bbq(data_dir: str | Path) -> ConfigurableTask:
    """BBQ (Parrish et al.), the social-bias benchmark: multiple choice over ambiguous and disambiguated contexts;
    accuracy on each and the bias scores, overall and per category. The user supplies the release's data/*.jsonl."""
    return build_task(stock_config("bbq/bbq_multiple_choice.yaml", custom_dataset=partial(_bbq_docs, str(data_dir))))


def _gsm8k_docs(data_dir: str, **_lm_eval_metadata) -> DatasetDict:
    fields = ("question", "answer")
    return splits(
        train=read_jsonl(benchmark_file(data_dir, "gsm8k/train.jsonl"), fields),
        test=read_jsonl(benchmark_file(data_dir, "gsm8k/test.jsonl"), fields),
    )


def gsm8k(data_dir: str | Path, cot: bool) -> ConfigurableTask:
    """GSM8K's test split: 5-shot from the train split with the number after '####' extracted (gsm8k), or 8-shot
    chain of thought with Wei et al.'s exemplars and 'The answer is N' extracted (gsm8k_cot)."""
    relative = "gsm8k/gsm8k-cot.yaml" if cot else "gsm8k/gsm8k.yaml"
    return build_task(stock_config(relative, custom_dataset=partial(_gsm8k_docs, str(data_dir))))


def _bbh_docs(data_dir: str, task: str, **_lm_eval_metadata) -> DatasetDict:
    return splits(test=read_bbh(benchmark_file(data_dir, f"bbh/bbh/{task}.json")))


def bbh_task(data_dir: str | Path, task: str) -> ConfigurableTask:
    """One BBH task with its 3 chain-of-thought exemplars (Suzgun et al.'s cot-prompts), the answer taken from
    'the answer is ...'."""
    if task not in BBH_TASKS:
        raise ValueError(f"{task} is not a BIG-Bench Hard task; one of {', '.join(BBH_TASKS)}")
    config = stock_config(f"bbh/cot_fewshot/{task}.yaml", custom_dataset=partial(_bbh_docs, str(data_dir), task))
    return build_task(config)


def bbh(data_dir: str | Path) -> Group:
    members = [bbh_task(data_dir, task) for task in BBH_TASKS]
    return group("bbh_cot_fewshot", members, "exact_match", "get-answer", 3.0)


def _mmlu_pro_docs(data_dir: str, **_lm_eval_metadata) -> DatasetDict:
    return splits(
        test=read_table(find_table(data_dir, "mmlu_pro/test"), MMLU_PRO_FIELDS),
        validation=read_table(find_table(data_dir, "mmlu_pro/validation"), MMLU_PRO_FIELDS),
    )


def mmlu_pro_category(data_dir: str | Path, category: str) -> ConfigurableTask:
    """One MMLU-Pro category: 10 options, 5-shot chain of thought from the validation split, 'the answer is (X)'
    extracted. The user supplies the files (the data is published only on the Hugging Face hub)."""
    if category not in MMLU_PRO_CATEGORIES:
        raise ValueError(f"{category} is not an MMLU-Pro category; one of {', '.join(MMLU_PRO_CATEGORIES)}")
    config = stock_config(f"mmlu_pro/mmlu_pro_{category}.yaml", custom_dataset=partial(_mmlu_pro_docs, str(data_dir)))
    return build_task(config)


def mmlu_pro(data_dir: str | Path) -> Group:
    members = [mmlu_pro_category(data_dir, category) for category in MMLU_PRO_CATEGORIES]
    return group("mmlu_pro", members, "exact_match", "custom-extract", 2.0)
