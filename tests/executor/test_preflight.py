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
from tests.processes import llmp

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
        reported = [p for p in unsupported(stage) if p.loc == ("kind",)]
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


def test_validating_a_job_starts_without_torch():
    """`llmp validate`, the admission webhook and the jobs API read the registry (what is not built) without running
    a stage, so they start without torch: each entry imports its runner module only when it runs."""
    code = (
        "import sys; from typer.testing import CliRunner; from llm_platform.cli import app; "
        "import llm_platform.operator.admission, llm_platform.services.jobs_api; "
        "result = CliRunner().invoke(app, ['validate', 'examples/pipeline.yaml']); "
        "print(result.exit_code, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "False"]


def test_every_registered_runner_loads_a_run_function():
    for kind, runner in RUNNERS.items():
        lazy = getattr(runner, "runner", runner)  # a training stage's runner is wrapped by its launcher
        assert callable(lazy.load().run), kind


def test_serving_with_vllm_needs_vllm_here():
    job = load_job("examples/serve-vllm.yaml")
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    (problem,) = stage_problems(job, "serve")
    assert problem.path == "spec.stages[0].serve.engine" and "'vllm'" in problem.message
    assert "engine: builtin" in problem.hint
    job.spec.stage("serve").serve.engine = "builtin"
    assert stage_problems(job, "serve") == []


def test_qlora_needs_no_optional_package():
    """Its NF4 base is pure PyTorch, so it runs wherever LoRA does."""
    job = load_job("examples/finetune-lora.yaml")
    job.spec.stage("sft").finetune.method = "qlora"
    job.spec.stage("sft").train.parallel.gpus_per_node = 1
    assert stage_problems(job, "sft") == []


def test_qlora_on_several_gpus_is_named():
    job = load_job("examples/finetune-lora.yaml")
    stage = job.spec.stage("sft")
    stage.finetune.method = "qlora"
    stage.train = TrainSpec(steps=10, parallel={"gpus_per_node": 8})
    (problem,) = stage_problems(job, "sft")
    assert problem.path.endswith("].finetune.method") and "one process" in problem.message


def test_a_reward_model_on_several_gpus_is_named():
    job = load_job("examples/align-dpo.yaml")
    stage = next(s for s in job.spec.stages if s.align is not None)
    stage.align.method = "reward"
    stage.align.lora = None
    stage.train = TrainSpec(steps=10, parallel={"gpus_per_node": 2})
    (problem,) = [p for p in stage_problems(job, stage.name) if p.loc[-2:] == ("align", "method")]
    assert "one process" in problem.message and "gpus_per_node: 1" in problem.hint


def test_cuda_only_settings_are_named_before_anything_runs_on_a_machine_without_cuda():
    """Paging and FP8 exist only on CUDA: without it the stage would fail at its first step, after the stages before
    it had run. Asked of this machine (CI has no GPU; on a GPU machine there is nothing to refuse)."""
    import torch

    job = load_job("examples/finetune-lora.yaml")
    job.spec.stage("sft").train = TrainSpec(steps=10, optimizer="paged_adamw8bit", fp8=True)
    found = [p for p in stage_problems(job, "sft") if "this machine has no CUDA device" in p.message]
    if torch.cuda.is_available():
        assert found == []
        return
    paged, fp8 = found
    assert paged.path == "spec.stages[0].train.optimizer" and "runs only on CUDA" in paged.message
    assert paged.hint == "run it on a machine with an NVIDIA GPU, or use optimizer: adamw8bit"
    assert fp8.path == "spec.stages[0].train.fp8" and fp8.hint.endswith("or leave fp8 out")


def eval_problems(settings: str):
    return stage_problems(load_job(with_stage_settings(EVAL_NEEDS, EVAL_NEEDS + f"    eval: {settings}\n")), "eval")


def test_offline_eval_tasks_need_a_data_dir():
    (problem,) = eval_problems("{tasks: [hellaswag, mmlu_anatomy, arc_easy]}")
    assert problem.path == "spec.stages[3].eval.data_dir"
    assert problem.message.startswith("the offline tasks hellaswag, mmlu_anatomy read local benchmark files")
    assert "or write lm-eval:hellaswag, lm-eval:mmlu_anatomy for lm-eval's own task" in problem.message
    assert eval_problems("{tasks: [hellaswag, mmlu_anatomy], data_dir: /data}") == []
    assert eval_problems("{tasks: ['lm-eval:hellaswag', arc_easy]}") == []


def test_a_task_listed_twice_is_named():
    (problem,) = eval_problems("{tasks: [mmlu, hellaswag, mmlu_anatomy], data_dir: /data}")
    assert problem.path == "spec.stages[3].eval.tasks[2]" and "'mmlu' (eval.tasks[0])" in problem.message


def test_eval_tasks_without_lm_eval_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    (problem,) = eval_problems("{tasks: [arc_easy]}")
    assert problem.path == "spec.stages[3].eval.tasks" and "'lm_eval'" in problem.message
    assert problem.hint == "pip install 'llm-platform[eval]'"


def test_a_missing_optional_package_names_the_field_and_the_install(monkeypatch):
    job = load_job(with_stage_settings("seq_len: 64}", "seq_len: 64, parallel: {strategy: deepspeed}}"))
    pytest.importorskip("deepspeed")  # the dev extra has it, so the setting is fine as installed
    assert stage_problems(job, "pretrain") == []
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # how Python marks a module as not importable
    (problem,) = stage_problems(job, "pretrain")
    assert problem.path == "spec.stages[2].train.parallel.strategy" and "'deepspeed'" in problem.message
    assert problem.hint == "pip install 'llm-platform[gpu]'"


def test_any_one_of_alternative_packages_will_do(monkeypatch):
    job = load_job(with_stage_settings("seq_len: 64}", "seq_len: 64, tensorboard: true}"))
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    (problem,) = stage_problems(job, "pretrain")
    assert problem.loc[-2:] == ("train", "tensorboard") and "'tensorboard'" in problem.message
    monkeypatch.delitem(sys.modules, "tensorboardX")
    pytest.importorskip("tensorboardX", reason="tensorboardX is not installed here")
    assert stage_problems(job, "pretrain") == []


def test_data_settings_name_their_source_index(monkeypatch):
    job = load_job(
        with_stage_settings(
            "data: {sources: [{type: stdlib}]}",
            "data: {sources: [{type: stdlib}, {type: parquet, path: 'x/*.parquet'}], plots: true}",
        )
    )
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    assert [p.path for p in stage_problems(job, "data")] == ["spec.stages[0].data.sources[1].type"]


def test_check_lists_every_problem_of_every_stage(monkeypatch):
    job = load_job(
        with_stage_settings("seq_len: 64}", "seq_len: 64, wandb_project: p}").replace(
            EVAL_NEEDS, EVAL_NEEDS + "    eval: {tasks: [mmlu]}\n"
        )
    )
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(PreflightError) as info:
        check(job, [stage.name for stage in job.spec.stages])
    assert [p.loc[:3] for p in info.value.problems] == [("spec", "stages", 2), ("spec", "stages", 3)]
    assert str(info.value).startswith("cannot run, nothing was started:\n  - spec.stages[2].train.wandb_project")


def test_stages_downstream_of_a_due_stage_may_run_too():
    job = load_job(GOOD)
    order = ["data", "tok", "pretrain", "eval"]
    assert stages_that_may_run(job, order, {"tok"}) == ["tok", "pretrain", "eval"]
    assert stages_that_may_run(job, order, {"eval"}) == ["eval"]
    assert stages_that_may_run(job, order, set()) == []


def test_llmp_run_refuses_before_the_first_stage(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(JOB.replace("STEPS", "4").replace("eval: {limit: 2,", "eval: {tasks: [hellaswag], limit: 2,"))
    result = llmp("run", str(path), "--workdir", str(tmp_path / "w"))
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{path}: spec.stages[3].eval.data_dir: the offline tasks hellaswag")
    assert "▶" not in result.stdout
    assert not (tmp_path / "w" / "data").exists()


def test_llmp_stage_run_refuses_what_it_cannot_do(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(JOB.replace("STEPS", "4").replace("eval: {limit: 2,", "eval: {tasks: [hellaswag], limit: 2,"))
    result = llmp("stage", "run", "--job", str(path), "--stage", "eval", "--storage", f"file://{tmp_path}/w")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("spec.stages[3].eval.data_dir: the offline tasks hellaswag read local")


def test_synthetic_data_over_http_needs_the_openai_package(monkeypatch):
    synthetic = "synthetic: {endpoint: 'http://127.0.0.1:8000/v1', model: m, topics: [t]}"
    job = load_job(
        with_stage_settings("data: {sources: [{type: stdlib}]}", f"data: {{sources: [{{type: stdlib}}], {synthetic}}}")
    )
    monkeypatch.setitem(sys.modules, "openai", None)
    (problem,) = stage_problems(job, "data")
    assert problem.path == "spec.stages[0].data.synthetic.endpoint" and "'openai'" in problem.message
    job.spec.stage("data").data.synthetic.endpoint = "engine:/models/tiny"  # the built-in engine needs no client
    assert stage_problems(job, "data") == []
