"""What each name in `eval.tasks` means: an offline benchmark of ours over local files, or one of lm-eval's own tasks.

The names in `OFFLINE_TASKS` (and `flores200_<src>-<tgt>`) are defined over the files in `eval.data_dir`, because
lm-eval's own versions download from the Hugging Face hub, which a cluster without egress (or this machine) cannot
reach. Every other name goes to lm-eval's task registry as it is; `lm-eval:<name>` reaches lm-eval's own task even
where we define one of the same name. Pure and import-light: preflight reads it before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

LM_EVAL_MISSING = (
    "eval.tasks needs the 'lm_eval' package (lm-evaluation-harness), which is not installed; "
    "pip install 'llm-platform[eval]'"
)
STOCK_PREFIX = "lm-eval:"

# the 57 subjects of Hendrycks et al.'s MMLU, named as the data files are (<subject>_<split>.csv)
MMLU_SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine", "college_physics",
    "computer_security", "conceptual_physics", "econometrics", "electrical_engineering", "elementary_mathematics",
    "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry", "high_school_computer_science",
    "high_school_european_history", "high_school_geography", "high_school_government_and_politics",
    "high_school_macroeconomics", "high_school_mathematics", "high_school_microeconomics", "high_school_physics",
    "high_school_psychology", "high_school_statistics", "high_school_us_history", "high_school_world_history",
    "human_aging", "human_sexuality", "international_law", "jurisprudence", "logical_fallacies", "machine_learning",
    "management", "marketing", "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition",
    "philosophy", "prehistory", "professional_accounting", "professional_law", "professional_medicine",
    "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy", "virology",
    "world_religions",
)  # fmt: skip

# the 27 tasks of Suzgun et al.'s BIG-Bench Hard, named as the data files are (bbh/<task>.json)
BBH_TASKS = (
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa", "dyck_languages",
    "formal_fallacies", "geometric_shapes", "hyperbaton", "logical_deduction_five_objects",
    "logical_deduction_seven_objects", "logical_deduction_three_objects", "movie_recommendation",
    "multistep_arithmetic_two", "navigate", "object_counting", "penguins_in_a_table",
    "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
    "sports_understanding", "temporal_sequences", "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects", "web_of_lies",
    "word_sorting",
)  # fmt: skip

# MMLU-Pro's 14 categories, as lm-eval names its per-category tasks
MMLU_PRO_CATEGORIES = (
    "biology", "business", "chemistry", "computer_science", "economics", "engineering", "health", "history", "law",
    "math", "other", "philosophy", "physics", "psychology",
)  # fmt: skip

# groups and the leaf tasks they run
GROUPS = {
    "mmlu": tuple(f"mmlu_{subject}" for subject in MMLU_SUBJECTS),
    "bbh_cot_fewshot": tuple(f"bbh_cot_fewshot_{task}" for task in BBH_TASKS),
    "mmlu_pro": tuple(f"mmlu_pro_{category}" for category in MMLU_PRO_CATEGORIES),
}

OFFLINE_TASKS = (
    *GROUPS,
    *(leaf for leaves in GROUPS.values() for leaf in leaves),
    "hellaswag", "truthfulqa_mc1", "truthfulqa_mc2", "truthfulqa_gen", "gsm8k", "gsm8k_cot", "humaneval",
    "humaneval_sampled", "squad", "summarization", "bbq", "bfcl_simple", "redteam",
)  # fmt: skip

# FLORES-200 translation between two languages whose files sit in flores200/devtest, e.g. flores200_eng-deu
FLORES_NAME = re.compile(r"flores200_([a-z]{3})-([a-z]{3})")

# what each offline task reads under eval.data_dir (for the message when data_dir is missing)
DATA_FILES = {
    "mmlu": "mmlu/{dev,test}/*.csv",
    "mmlu_pro": "mmlu_pro/{test,validation}.jsonl (or .json/.parquet, the TIGER-Lab/MMLU-Pro columns)",
    "hellaswag": "hellaswag/hellaswag_val_full.txt.bz2",
    "truthfulqa": "truthfulqa/mc_task.json (MC1/MC2) and truthfulqa/TruthfulQA.csv (generation)",
    "gsm8k": "gsm8k/{train,test}.jsonl",
    "bbq": "bbq/data/<Category>.jsonl (the BBQ release's files)",
    "bbh": "bbh/bbh/<task>.json",
    "humaneval": "humaneval/HumanEval.jsonl.gz",
    "squad": "squad_v1.1/dev-v1.1.json",
    "flores200": "flores200/{dev,devtest}/<lang>_<script>.{dev,devtest}",
    "summarization": "summarization/test.jsonl ({document, summary} per line)",
    "redteam": "redteam/prompts.jsonl ({prompt} per line)",
    "bfcl": "bfcl/BFCL_v3_simple.json and bfcl/possible_answer/BFCL_v3_simple.json (the BFCL release's files)",
}


@dataclass(frozen=True)
class TaskRef:
    """One entry of `eval.tasks`: the name lm-eval reports results under, and whether it is one of our offline tasks."""

    name: str
    offline: bool

    def covers(self) -> set[str]:
        """The leaf tasks this entry evaluates (a group covers its members), to catch an item listed twice."""
        if self.offline and self.name in GROUPS:
            return set(GROUPS[self.name])
        return {self.name}


def resolve(name: str) -> TaskRef:
    if name.startswith(STOCK_PREFIX):
        return TaskRef(name.removeprefix(STOCK_PREFIX), offline=False)
    return TaskRef(name, offline=name in OFFLINE_TASKS or FLORES_NAME.fullmatch(name) is not None)


def task_list_problems(tasks: Sequence[str], data_dir: str | None) -> list[str]:
    """What is wrong with a task list, found from the spec alone: empty or repeated names, tasks listed inside a group
    also listed, and offline tasks without `eval.data_dir`."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, name in enumerate(tasks):
        ref = resolve(name)
        if not ref.name:
            problems.append(f"eval.tasks[{i}]: empty task name; write an lm-eval task name such as hellaswag")
            continue
        overlap = sorted(leaf for leaf in ref.covers() if leaf in seen)
        if overlap:
            first = tasks[seen[overlap[0]]]
            problems.append(
                f"eval.tasks[{i}]: '{name}' evaluates {overlap[0]}, which '{first}' (eval.tasks[{seen[overlap[0]]}]) "
                "already evaluates; list it once"
            )
        for leaf in ref.covers():
            seen.setdefault(leaf, i)
    offline = [name for name in tasks if resolve(name).offline]
    if offline and not data_dir:
        stock = ", ".join(f"{STOCK_PREFIX}{name}" for name in offline)
        problems.append(
            f"eval.data_dir: the offline tasks {', '.join(offline)} read local benchmark files; set eval.data_dir to "
            f"the folder holding {data_files(offline)}, or write {stock} for lm-eval's own task (it downloads from the "
            "Hugging Face hub)"
        )
    return problems


def data_files(names: Sequence[str]) -> str:
    """The files `names` read under eval.data_dir, for messages."""
    families = []
    for name in names:
        family = max((key for key in DATA_FILES if name.startswith(key)), key=len, default=None)
        if family and family not in families:
            families.append(family)
    return ", ".join(DATA_FILES[family] for family in families)
