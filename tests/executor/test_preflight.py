"""Preflight: what a stage would fail on partway is reported before anything runs, naming the stage and field."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from llm_platform.api import STAGE_KINDS, Stage, load_job
from llm_platform.api.train import TrainSpec
from llm_platform.executor import stages_that_may_run
from llm_platform.trainer.stages import RUNNERS
from llm_platform.trainer.stages.preflight import (
    NOT_BUILT,
    PreflightError,
    check,
    stage_problems,
    unsupported,
)
from tests.api.test_validation import GOOD

from .test_run_local import JOB

EVAL_NEEDS = "    needs: [pretrain]\n"


def with_stage_settings(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


def test_every_kind_has_a_runner_or_says_why_not():
    assert set(RUNNERS) | set(NOT_BUILT) == set(STAGE_KINDS)
    assert not set(RUNNERS) & set(NOT_BUILT)
    for kind in STAGE_KINDS:
        stage = Stage.model_construct(name="s", kind=kind)
        reported = [p for p in unsupported(stage) if p.startswith("kind:")]
        assert bool(reported) == (kind in NOT_BUILT), kind


def test_the_stage_kinds_are_declared_once_and_the_runners_agree():
    from typing import get_args

    from llm_platform.api.stage import KINDS, StageKind

    assert get_args(StageKind) == tuple(KINDS) == STAGE_KINDS  # the `kind` field's values come from the table
    # one runner per kind, in the table's order, none for an unknown kind; the rest are derived as not built
    assert list(RUNNERS) == [kind for kind in KINDS if kind not in NOT_BUILT]
    for kind, rules in KINDS.items():
        stage = Stage.model_construct(name="s", kind=kind)
        assert stage.outputs == rules.outputs and stage.trains == rules.trains
        assert all(section in Stage.model_fields for section in rules.sections), kind


def test_every_registered_runner_loads_a_run_function():
    for kind, runner in RUNNERS.items():
        lazy = getattr(runner, "runner", runner)  # a training stage's runner is wrapped by its launcher
        assert callable(lazy.load().run), kind


def test_serving_with_vllm_needs_vllm_here():
    job = load_job("examples/serve-vllm.yaml")
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    assert stage_problems(job.spec.stage("serve")) == [
        "stage 'serve': serve.engine needs the 'vllm' package, which is not installed; pip install vllm (on a CUDA "
        "machine), or use engine: builtin"
    ]
    job.spec.stage("serve").serve.engine = "builtin"
    assert stage_problems(job.spec.stage("serve")) == []


def test_qlora_needs_no_optional_package():
    """Its NF4 base is pure PyTorch, so it runs wherever LoRA does."""
    job = load_job("examples/finetune-lora.yaml")
    job.spec.stage("sft").finetune.method = "qlora"
    job.spec.stage("sft").train.parallel.gpus_per_node = 1
    assert stage_problems(job.spec.stage("sft")) == []


def test_qlora_on_several_gpus_is_named():
    job = load_job("examples/finetune-lora.yaml")
    stage = job.spec.stage("sft")
    stage.finetune.method = "qlora"
    stage.train = TrainSpec(steps=10, parallel={"gpus_per_node": 8})
    (problem,) = stage_problems(stage)
    assert problem.startswith("stage 'sft': finetune.method: qlora runs in one process")


def test_a_reward_model_on_several_gpus_is_named():
    job = load_job("examples/align-dpo.yaml")
    stage = next(s for s in job.spec.stages if s.align is not None)
    stage.align.method = "reward"
    stage.align.lora = None
    stage.train = TrainSpec(steps=10, parallel={"gpus_per_node": 2})
    assert [p for p in stage_problems(stage) if "align.method" in p] == [
        f"stage '{stage.name}': align.method: reward trains and writes its model in one process; set train.parallel "
        "to one GPU (nodes: 1, gpus_per_node: 1)"
    ]


def eval_stage(settings: str):
    return load_job(with_stage_settings(EVAL_NEEDS, EVAL_NEEDS + f"    eval: {settings}\n")).spec.stage("eval")


def test_offline_eval_tasks_need_a_data_dir():
    (problem,) = stage_problems(eval_stage("{tasks: [hellaswag, mmlu_anatomy, arc_easy]}"))
    assert problem.startswith(
        "stage 'eval': eval.data_dir: the offline tasks hellaswag, mmlu_anatomy read local benchmark files; "
        "set eval.data_dir"
    )
    assert "or write lm-eval:hellaswag, lm-eval:mmlu_anatomy for lm-eval's own task" in problem
    assert stage_problems(eval_stage("{tasks: [hellaswag, mmlu_anatomy], data_dir: /data}")) == []
    assert stage_problems(eval_stage("{tasks: ['lm-eval:hellaswag', arc_easy]}")) == []


def test_a_task_listed_twice_is_named():
    assert stage_problems(eval_stage("{tasks: [mmlu, hellaswag, mmlu_anatomy], data_dir: /data}")) == [
        "stage 'eval': eval.tasks[2]: 'mmlu_anatomy' evaluates mmlu_anatomy, which 'mmlu' (eval.tasks[0]) already "
        "evaluates; list it once"
    ]


def test_eval_tasks_without_lm_eval_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    assert stage_problems(eval_stage("{tasks: [arc_easy]}")) == [
        "stage 'eval': eval.tasks needs the 'lm_eval' package, which is not installed; pip install 'llm-platform[eval]'"
    ]


def test_a_missing_optional_package_names_the_field_and_the_install(monkeypatch):
    job = load_job(with_stage_settings("seq_len: 64}", "seq_len: 64, parallel: {strategy: deepspeed}}"))
    pytest.importorskip("deepspeed")  # the dev extra has it, so the setting is fine as installed
    assert stage_problems(job.spec.stage("pretrain")) == []
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # how Python marks a module as not importable
    assert stage_problems(job.spec.stage("pretrain")) == [
        "stage 'pretrain': train.parallel.strategy needs the 'deepspeed' package, which is not installed; "
        "pip install 'llm-platform[gpu]'"
    ]


def test_any_one_of_alternative_packages_will_do(monkeypatch):
    job = load_job(with_stage_settings("seq_len: 64}", "seq_len: 64, tensorboard: true}"))
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    assert "train.tensorboard needs the 'tensorboard' package" in stage_problems(job.spec.stage("pretrain"))[0]
    monkeypatch.delitem(sys.modules, "tensorboardX")
    pytest.importorskip("tensorboardX", reason="tensorboardX is not installed here")
    assert stage_problems(job.spec.stage("pretrain")) == []


def test_data_settings_name_their_source_index(monkeypatch):
    job = load_job(
        with_stage_settings(
            "data: {sources: [{type: stdlib}]}",
            "data: {sources: [{type: stdlib}, {type: parquet, path: 'x/*.parquet'}], plots: true}",
        )
    )
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert [p.split(" needs")[0] for p in stage_problems(job.spec.stage("data"))] == [
        "stage 'data': data.sources[1].type",
        "stage 'data': data.plots",
    ]


def test_check_lists_every_problem_of_every_stage(monkeypatch):
    job = load_job(
        with_stage_settings("seq_len: 64}", "seq_len: 64, wandb_project: p}").replace(
            EVAL_NEEDS, EVAL_NEEDS + "    eval: {tasks: [mmlu]}\n"
        )
    )
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(PreflightError) as info:
        check(job.spec.stages)
    assert [p.split(":")[0] for p in info.value.problems] == ["stage 'pretrain'", "stage 'eval'"]
    assert str(info.value).startswith("cannot run, nothing was started:\n  - stage 'pretrain'")


def test_stages_downstream_of_a_due_stage_may_run_too():
    job = load_job(GOOD)
    order = ["data", "tok", "pretrain", "eval"]
    assert stages_that_may_run(job, order, {"tok"}) == ["tok", "pretrain", "eval"]
    assert stages_that_may_run(job, order, {"eval"}) == ["eval"]
    assert stages_that_may_run(job, order, set()) == []


def llmp(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "llm_platform.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_llmp_run_refuses_before_the_first_stage(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(JOB.replace("STEPS", "4").replace("eval: {limit: 2,", "eval: {tasks: [hellaswag], limit: 2,"))
    result = llmp("run", str(path), "--workdir", str(tmp_path / "w"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        "cannot run, nothing was started:\n  - stage 'eval': eval.data_dir: the offline tasks hellaswag"
        in result.stderr
    )
    assert "▶" not in result.stdout
    assert not (tmp_path / "w" / "data").exists()


def test_llmp_stage_run_refuses_what_it_cannot_do(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(JOB.replace("STEPS", "4").replace("eval: {limit: 2,", "eval: {tasks: [hellaswag], limit: 2,"))
    result = llmp("stage", "run", "--job", str(path), "--stage", "eval", "--storage", f"file://{tmp_path}/w")
    assert result.returncode == 2
    assert "stage 'eval': eval.data_dir: the offline tasks hellaswag read local" in result.stderr
