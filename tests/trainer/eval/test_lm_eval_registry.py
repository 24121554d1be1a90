"""`--model llmp`: our model class in lm-eval's registry, built from `model_args` as lm-eval's command line does."""

from __future__ import annotations

import pytest

from tests.conftest import shared_path

pytest.importorskip("lm_eval", reason="the lm-eval tests need the eval extra: pip install 'llm-platform[eval]'")

from lm_eval import simple_evaluate  # noqa: E402
from lm_eval.api.registry import get_model  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from llm_platform.trainer.eval.lm_eval_model import PlatformLM  # noqa: E402
from llm_platform.trainer.eval.offline_tasks import offline_task  # noqa: E402


def test_llmp_names_our_model():
    assert get_model("llmp") is PlatformLM


def test_model_args_build_the_model_that_scores_as_ours(checkpoint, ours):
    task = offline_task("truthfulqa_mc1", shared_path("data"))
    by_name = simple_evaluate(
        model="llmp", model_args=f"path={checkpoint},max_length=128", tasks=[task], limit=3, device="cpu",
        task_manager=TaskManager(include_defaults=False), log_samples=True,
    )  # fmt: skip
    direct = simple_evaluate(
        model=ours, tasks=[offline_task("truthfulqa_mc1", shared_path("data"))], limit=3,
        task_manager=TaskManager(include_defaults=False), log_samples=True,
    )  # fmt: skip
    scores = [[r[0][0] for r in s["resps"]] for s in by_name["samples"]["truthfulqa_mc1"]]
    assert scores == [[r[0][0] for r in s["resps"]] for s in direct["samples"]["truthfulqa_mc1"]]


def test_unknown_model_args_are_named(checkpoint):
    with pytest.raises(ValueError, match=r"unknown --model_args \['temperature'\]"):
        PlatformLM.create_from_arg_string(f"path={checkpoint},temperature=0.5")
    with pytest.raises(ValueError, match="--model_args needs path="):
        PlatformLM.create_from_arg_string("dtype=float32")
