"""`eval.tasks` through lm-eval: each name resolved to our offline task or lm-eval's own, one `simple_evaluate` run,
and the numbers a report and a dashboard want out of its result.

    results = run_tasks(PlatformLM.from_pretrained(model_dir), ["mmlu", "hellaswag"], data_dir="../shared/data")
    headline_metrics(results, ["mmlu", "hellaswag"])   # {"mmlu_acc": .., "hellaswag_acc": .., "hellaswag_acc_norm": ..}
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .task_names import LM_EVAL_MISSING, resolve, task_list_problems

REPORT_KEYS = ("results", "groups", "group_subtasks", "versions", "n-shot", "higher_is_better", "n-samples")


def require_lm_eval() -> None:
    if importlib.util.find_spec("lm_eval") is None:
        raise ImportError(LM_EVAL_MISSING)


def task_list(names: Sequence[str], data_dir: str | Path | None) -> list:
    """What `simple_evaluate` takes for `names`: our offline tasks built over `data_dir`, other names as they are."""
    problems = task_list_problems(names, None if data_dir is None else str(data_dir))
    if problems:
        raise ValueError("; ".join(problems))
    from .offline_tasks import offline_task

    refs = [resolve(name) for name in names]
    return [offline_task(ref.name, data_dir) if ref.offline else ref.name for ref in refs]


def run_tasks(
    lm,
    names: Sequence[str],
    *,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    num_fewshot: int | None = None,
    log_samples: bool = False,
    fewshot_as_multiturn: bool = False,
    apply_chat_template: bool = False,
) -> dict[str, Any]:
    """lm-eval's result dict for `names` scored by `lm` (any lm-eval `LM`); `limit` caps the examples of each task
    (each MMLU subject counts as a task)."""
    require_lm_eval()
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    tasks = task_list(names, data_dir)
    # indexing lm-eval's ~15,000 stock task files takes seconds; only do it when a stock task is asked for
    manager = TaskManager(include_defaults=any(isinstance(task, str) for task in tasks))
    return simple_evaluate(
        model=lm,
        tasks=tasks,
        task_manager=manager,
        limit=limit,
        num_fewshot=num_fewshot,
        log_samples=log_samples,
        apply_chat_template=apply_chat_template,
        fewshot_as_multiturn=fewshot_as_multiturn,
    )


def metric_name(task: str, key: str) -> str:
    """The headline name of lm-eval result key `metric,filter` of `task`: `<task>_<metric>[_<filter>]`, lower case."""
    metric, _, filter_name = key.partition(",")
    name = f"{task}_{metric}" if filter_name in ("", "none") else f"{task}_{metric}_{filter_name}"
    return re.sub(r"[^a-z0-9_]+", "_", name.lower())


def headline_metrics(results: dict[str, Any], names: Sequence[str]) -> dict[str, float]:
    """`<task>_<metric>` for every metric of every task or group named in `names` (MMLU's subjects stay in the
    report), e.g. mmlu_acc, hellaswag_acc_norm, gsm8k_exact_match_strict_match."""
    metrics: dict[str, float] = {}
    for name in names:
        task = resolve(name).name
        for key, value in results["results"].get(task, {}).items():
            if "," in key and "_stderr" not in key and isinstance(value, int | float):
                metrics[metric_name(task, key)] = round(float(value), 4)
    return metrics


def report(results: dict[str, Any], names: Sequence[str], limit: int | None) -> dict[str, Any]:
    """What `report/eval.json` keeps of lm-eval's result: every task's and group's numbers and how they were made
    (task versions, shots, examples scored), without the per-example records."""
    import lm_eval

    kept = {key: results[key] for key in REPORT_KEYS if key in results}
    return {"tasks": list(names), "limit": limit, "lm_eval_version": lm_eval.__version__, **kept}
