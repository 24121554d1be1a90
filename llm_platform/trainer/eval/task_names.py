"""What each name in `eval.tasks` means: an offline benchmark of ours over local files, or one of lm-eval's own tasks.

`mmlu`, `mmlu_<subject>` and `hellaswag` are defined here over the files in `eval.data_dir`, because lm-eval's own
versions download from the Hugging Face hub, which a cluster without egress (or this machine) cannot reach. Every other
name goes to lm-eval's task registry as it is; `lm-eval:<name>` reaches lm-eval's own task even where we define one of
the same name. Pure and import-light: preflight reads it before anything runs.
"""

from __future__ import annotations

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

OFFLINE_TASKS = ("mmlu", "hellaswag", *(f"mmlu_{subject}" for subject in MMLU_SUBJECTS))


@dataclass(frozen=True)
class TaskRef:
    """One entry of `eval.tasks`: the name lm-eval reports results under, and whether it is one of our offline tasks."""

    name: str
    offline: bool

    def covers(self) -> set[str]:
        """The leaf tasks this entry evaluates (a group covers its members), to catch an item listed twice."""
        if self.offline and self.name == "mmlu":
            return {f"mmlu_{subject}" for subject in MMLU_SUBJECTS}
        return {self.name}


def resolve(name: str) -> TaskRef:
    if name.startswith(STOCK_PREFIX):
        return TaskRef(name.removeprefix(STOCK_PREFIX), offline=False)
    return TaskRef(name, offline=name in OFFLINE_TASKS)


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
            "the folder holding mmlu/ (dev/ and test/ csv files) and hellaswag/ (hellaswag_val_full.txt.bz2), "
            f"or write {stock} for lm-eval's own task (it downloads from the Hugging Face hub)"
        )
    return problems
