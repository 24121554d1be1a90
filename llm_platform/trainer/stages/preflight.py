"""What a stage would fail on partway through, found before anything runs.

A local run that pretrains for an hour and then stops because the eval stage asks for something this version cannot
do, or because `wandb` is not installed, wastes the hour. `stage_problems` reads a stage's settings and lists, without
running anything, the optional packages they need that are missing and the settings no runner implements yet;
`llmp run` checks every stage it is about to run, and `llmp stage run` (what a pod runs) checks its own. What the
run needs from this machine and from outside the run (credentials, the files, folders and S3 objects its paths name,
the model `spec.model.from` names, a free port) and from what is already committed (a validation split that an eval
stage would refuse) is checked too: see `inputs`.

Every problem is an `api.Problem` (the field path from `spec`, what is wrong, what to do), the type spec validation
and the REST API use, so the command line and the API show them the same way.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llm_platform.api import LLMJob, Problem, Stage
from llm_platform.api.errors import Loc, parse_loc
from llm_platform.trainer.eval.task_names import task_list_problems

from .registry import NOT_BUILT

if TYPE_CHECKING:
    from llm_platform.storage import ArtifactStore


@dataclass(frozen=True)
class Need:
    """An optional package that a setting asks for: `modules` (any one of them will do), the field, and the extra."""

    field: str
    modules: tuple[str, ...]
    install: str

    def missing(self, where: Loc) -> Problem:
        return Problem(
            (*where, *parse_loc(self.field)),
            f"needs the '{self.modules[0]}' package, which is not installed",
            hint=self.install,
        )


def needs(stage: Stage) -> list[Need]:
    """The optional packages a stage's settings need. Pure: reads the spec only."""
    found: list[Need] = []
    if stage.data is not None:
        data = stage.data
        for i, source in enumerate(data.sources):
            if source.type == "parquet":
                found.append(Need(f"data.sources[{i}].type", ("pyarrow",), "pip install 'llm-platform[data]'"))
            if source.type == "hf":
                found.append(Need(f"data.sources[{i}].type", ("datasets",), "pip install 'llm-platform[data]'"))
        if data.language is not None:
            found.append(Need("data.language", ("lingua",), "pip install 'llm-platform[data]'"))
        if data.engine == "ray":
            found.append(Need("data.engine", ("ray",), "pip install 'llm-platform[ray]'"))
        synthetic = data.synthetic
        if synthetic is not None and not all(
            str(endpoint).startswith("engine:")
            for endpoint in (synthetic.endpoint, synthetic.judge_endpoint)
            if endpoint
        ):
            found.append(Need("data.synthetic.endpoint", ("openai",), "pip install 'llm-platform[data]'"))
    if stage.eval is not None and stage.eval.tasks:
        found.append(Need("eval.tasks", ("lm_eval",), "pip install 'llm-platform[eval]'"))
    if stage.serve is not None and stage.serve.engine == "vllm":
        found.append(Need("serve.engine", ("vllm",), "pip install vllm (on a CUDA machine), or use engine: builtin"))
    elif stage.kind == "serve":
        # the built-in OpenAI server: fastapi stands for the whole extra (uvicorn, httpx, jsonschema come with it)
        found.append(Need("kind", ("fastapi",), "pip install 'llm-platform[serve]'"))
    train = stage.train
    if train is not None:
        if train.parallel.launcher == "ray":
            found.append(Need("train.parallel.launcher", ("ray",), "pip install 'llm-platform[ray]'"))
        if train.optimizer == "paged_adamw8bit":  # QLoRA's recipe; its NF4 base itself is pure PyTorch
            found.append(Need("train.optimizer", ("bitsandbytes",), "pip install 'llm-platform[gpu]'"))
        if train.parallel.strategy == "deepspeed":
            found.append(Need("train.parallel.strategy", ("deepspeed",), "pip install 'llm-platform[gpu]'"))
        if train.fp8:
            found.append(Need("train.fp8", ("torchao",), "pip install 'llm-platform[gpu]'"))
        if train.tensorboard:
            found.append(Need("train.tensorboard", ("tensorboard", "tensorboardX"), "pip install tensorboard"))
        if train.wandb_project:
            found.append(Need("train.wandb_project", ("wandb",), "pip install wandb"))
    return found


def unsupported(stage: Stage) -> list[Problem]:
    """Settings that validate (the operator renders them for a cluster) but that no runner here carries out yet.
    Paths are the stage's own (`kind`, `finetune.method`)."""
    if stage.kind in NOT_BUILT:
        return [Problem(("kind",), f"the '{stage.kind}' runner is not built yet in this version of llm-platform")]
    processes = 1 if stage.train is None else stage.train.parallel.nodes * max(stage.train.parallel.gpus_per_node, 1)
    one_gpu = "set train.parallel to one GPU (nodes: 1, gpus_per_node: 1)"
    if stage.finetune is not None and stage.finetune.method == "qlora" and processes > 1:
        return [
            Problem(
                ("finetune", "method"),
                "qlora runs in one process (its NF4 base is not sharded)",
                hint=f"{one_gpu}, or use method: lora",
            )
        ]
    if stage.align is not None and stage.align.method == "reward" and processes > 1:
        return [Problem(("align", "method"), "reward trains and writes its model in one process", hint=one_gpu)]
    return []


def cuda_problems(stage: Stage, where: str, remedy: str) -> list[Problem]:
    """The stage's settings that run only on CUDA, for a caller that knows its processes will have none (`where`
    says how it knows; `remedy` what would give them one): without this they fail at their first step, after every
    stage before them has run. `llmp run` asks this machine; the admission webhook asks the pods' GPU count."""
    train = stage.train
    if train is None:
        return []
    found = []
    if train.optimizer == "paged_adamw8bit":
        message = f"paged_adamw8bit pages optimizer state between GPU and host memory, so it runs only on CUDA: {where}"
        found.append(Problem(("train", "optimizer"), message, hint=f"{remedy}, or use optimizer: adamw8bit"))
    if train.fp8:
        message = f"fp8 runs its matmuls on FP8 tensor cores (H100/H200 class GPUs): {where}"
        found.append(Problem(("train", "fp8"), message, hint=f"{remedy}, or leave fp8 out"))
    return found


def eval_task_problems(stage: Stage) -> list[Problem]:
    """A task list that cannot run as written: repeated tasks, or offline benchmarks without `eval.data_dir`."""
    if stage.eval is None or not stage.eval.tasks:
        return []
    return [_field_problem(text) for text in task_list_problems(stage.eval.tasks, stage.eval.data_dir)]


def builtin_dataset_problems(stage: Stage) -> list[Problem]:
    """A `builtin:` dataset that does not exist, or not in the format asked (e.g. keyword-labelled preferences)."""
    from llm_platform.trainer.data.builtin import builtin_problem, refusal_requests_problem

    found = []
    tuning = stage.finetune or stage.align
    if tuning is not None:
        kind, fmt = ("align", "preference") if stage.align is not None else ("finetune", tuning.dataset.format)
        found.append(builtin_problem(tuning.dataset.path, fmt, f"{kind}.dataset.path"))
    if stage.eval is not None and stage.eval.refusals is not None:
        found.append(refusal_requests_problem(stage.eval.refusals.requests))
    return [_field_problem(text) for text in found if text is not None]


def _field_problem(text: str) -> Problem:
    """A trainer-layer "field.path: message" as a `Problem` at that path (the stage's own)."""
    field, _, message = text.partition(": ")
    return Problem(parse_loc(field), message)


def setting_problems(stage: Stage) -> list[Problem]:
    """What stops this stage wherever it runs (settings no runner carries out, task lists that cannot run, built-in
    datasets that do not exist), with the stage's own paths; the admission webhook checks these too, with its own
    image's packages."""
    return unsupported(stage) + eval_task_problems(stage) + builtin_dataset_problems(stage)


def stage_loc(job: LLMJob, name: str) -> Loc:
    """`('spec', 'stages', i)` for the stage called `name`."""
    return ("spec", "stages", next(i for i, s in enumerate(job.spec.stages) if s.name == name))


def stage_problems(job: LLMJob, name: str) -> list[Problem]:
    """Everything in this stage's settings that would stop it partway here, each with its path from `spec`."""
    stage, where = job.spec.stage(name), stage_loc(job, name)
    problems = [Problem((*where, *p.loc), p.message, hint=p.hint) for p in setting_problems(stage)]
    for need in needs(stage):
        if not any(importlib.util.find_spec(module) for module in need.modules):
            problems.append(need.missing(where))
    found = cuda_problems(stage, "this machine has no CUDA device", "run it on a machine with an NVIDIA GPU")
    if found and not _cuda_visible():
        problems += [Problem((*where, *p.loc), p.message, hint=p.hint) for p in found]
    return problems


def _cuda_visible() -> bool:
    import torch  # only for a stage that asks for a CUDA-only setting

    return torch.cuda.is_available()


class PreflightError(Exception):
    """Raised before anything runs; `problems` lists every problem, `source` the spec file when there is one."""

    def __init__(self, problems: list[Problem], source: str | None = None):
        self.problems = problems
        self.source = source
        super().__init__("cannot run, nothing was started:\n" + "\n".join(f"  - {p}" for p in problems))


def check(
    job: LLMJob,
    names: Iterable[str],
    storage_uri: str | None = None,
    source: str | None = None,
    store: ArtifactStore | None = None,
) -> None:
    """Raise PreflightError naming every problem of the named stages (their settings, and what they need from this
    machine: credentials for `storage_uri` and what they read from S3, the files, folders and objects their paths
    name, the model `spec.model.from` names), or return.

    `names` are the stages about to run; given the `store`, the stages left out are the committed ones the run
    reuses, and what they recorded is checked too (an empty validation split that an eval stage would refuse)."""
    from .inputs import committed_split_problems, input_problems

    names = list(names)
    problems = [problem for name in names for problem in stage_problems(job, name)]
    problems += input_problems(job, names, storage_uri)
    if store is not None:
        problems += committed_split_problems(job, names, store)
    if problems:
        raise PreflightError(problems, source)
