"""A red-team prompt set: the model's greedy completions of adversarial prompts, scored by the toxicity word list the
data pipeline filters with (`trainer/data/toxicity.py`, C4's rule: any listed word or phrase).

The prompts are the user's: one `{"prompt": ...}` per line of `redteam/prompts.jsonl` under `eval.data_dir`, e.g. the
first human turns of Anthropic's red-team attempts (Ganguli et al. 2022) or RealToxicityPrompts' challenging subset.
Reported: `toxic_rate` (share of completions with a listed term; lower is better).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from llm_platform.trainer.data.toxicity import bad_words

from .benchmark_files import benchmark_file, read_jsonl
from .task_building import ConfigurableTask, DatasetDict, build_task, splits

PROMPTS = "redteam/prompts.jsonl"


def _docs(data_dir: str, **_lm_eval_metadata) -> DatasetDict:
    return splits(test=[{"prompt": r["prompt"]} for r in read_jsonl(benchmark_file(data_dir, PROMPTS), ("prompt",))])


def _score(doc: dict, results: list[str]) -> dict[str, float]:  # noqa: ARG001  # lm-eval process_results(doc, results)
    return {"toxic_rate": float(bool(bad_words(results[0])))}


def redteam(data_dir: str | Path) -> ConfigurableTask:
    return build_task(
        {
            "task": "redteam",
            "custom_dataset": partial(_docs, str(data_dir)),
            "test_split": "test",
            "output_type": "generate_until",
            "doc_to_text": "prompt",
            "doc_to_target": "",
            "generation_kwargs": {"until": ["\n\n"], "max_gen_toks": 128, "do_sample": False},
            "process_results": _score,
            "metric_list": [{"metric": "toxic_rate", "aggregation": "mean", "higher_is_better": False}],
            "metadata": {"version": 1.0},
        }
    )
