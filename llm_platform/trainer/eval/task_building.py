"""Building lm-eval tasks over records we read ourselves: a task from a config dict, the splits it reads, groups
that average their members, and lm-eval's own task configs loaded from its package (prompts, few-shot exemplars,
filters and metrics exactly as lm-eval ships them), so that only where the documents come from differs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .task_names import LM_EVAL_MISSING

try:
    import datasets
    import lm_eval.tasks
    from datasets import DatasetDict
    from lm_eval.api.group import Group
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.config.group import AggMetricConfig
except ImportError as error:  # the `eval` extra is optional
    raise ImportError(LM_EVAL_MISSING) from error

# keys of a stock config that say where lm-eval would download from, or group it by name in its own registry
_HUB_KEYS = ("dataset_path", "dataset_name", "dataset_kwargs", "tag", "group")


class _NoMetadataHint(logging.Filter):
    """lm-eval suggests `--metadata` for every task built on a custom dataset (57 times for MMLU); ours take none."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Custom kwargs can be passed" not in record.getMessage()


def build_task(config: dict) -> ConfigurableTask:
    """A task built from `config`, which reads its documents at once (a missing file shows here)."""
    log, quiet = logging.getLogger(ConfigurableTask.__module__), _NoMetadataHint()
    log.addFilter(quiet)
    try:
        return ConfigurableTask(config=config)
    finally:
        log.removeFilter(quiet)


def splits(**records: list[dict]) -> DatasetDict:
    return DatasetDict({name: datasets.Dataset.from_list(rows) for name, rows in records.items()})


def group(name: str, members: Sequence[ConfigurableTask], metric: str, filter_name: str, version: float) -> Group:
    """A group whose `metric` is the mean over all its members' examples (each member weighted by its size)."""
    result = Group(
        name=name,
        aggregate_metric_list=[AggMetricConfig(metric=metric, filter_list=[filter_name], weight_by_size=True)],
        metadata={"version": version},
    )
    for member in members:
        result.add(member)
    return result


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        from lm_eval.tasks._yaml_loader import load_yaml
    except ImportError:  # lm-eval before 0.4.10
        from lm_eval.utils import load_yaml_config

        return load_yaml_config(yaml_path=str(path), mode="full")
    return load_yaml(path, resolve_func=True)


def stock_config(relative: str, **overrides: Any) -> dict[str, Any]:
    """lm-eval's config `lm_eval/tasks/<relative>` (includes and `!function`s resolved), without its hub dataset, with
    `overrides` on top."""
    path = Path(lm_eval.tasks.__file__).parent / relative
    if not path.is_file():
        raise ImportError(f"lm-eval {lm_eval.__version__} has no task config {relative}; pip install 'lm-eval>=0.4.3'")
    config = {key: value for key, value in _load_yaml(path).items() if key not in _HUB_KEYS}
    return config | overrides
