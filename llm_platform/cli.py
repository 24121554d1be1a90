"""`llmp`: validate, run and render LLMJobs; run one stage (what pods execute); tokenizer and model tools."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Literal

import typer

from llm_platform.cli_adapter import app as adapter_app
from llm_platform.cli_api import api_app
from llm_platform.cli_api import app as serve_api_app
from llm_platform.cli_errors import DEBUG_ENV, ReportingGroup, UserError
from llm_platform.cli_eval import app as eval_app
from llm_platform.cli_operator import app as operator_app
from llm_platform.cli_operator import with_storage
from llm_platform.cli_serve import app as serve_app
from llm_platform.cli_status import app as status_app
from llm_platform.cli_tokenizer import app as tokenizer_app
from llm_platform.observability.console import make_console

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__, cls=ReportingGroup)
stage_app = typer.Typer(no_args_is_help=True, help="Run a single stage (this is what a pod executes).")
model_app = typer.Typer(no_args_is_help=True, help="Model presets, Hugging Face import and export.")
app.add_typer(stage_app, name="stage")
app.add_typer(model_app, name="model")

console = make_console()
err = make_console(stderr=True)


def _version() -> str:
    try:
        return version("llm-platform")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"llmp {_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help=f"Show the traceback of a failure (also: {DEBUG_ENV}=1).")
    ] = False,
    _version_flag: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Validate, run and render LLMJobs; run one stage (what pods execute); tokenizer and model tools."""
    if debug:
        os.environ[DEBUG_ENV] = "1"  # the stage subprocesses of `llmp run` inherit it


def _local_policy():
    """The local user's own machine: any path they can open; credentials built in or in LLMP_CREDENTIALS."""
    from llm_platform.api.policy import SpecPolicy

    return SpecPolicy.from_env(strict=False)


def _load(path: Path):
    """The LLMJob in `path`; a SpecError (every problem, with lines) goes to the group's one report."""
    from llm_platform.api import load_job

    return load_job(path, policy=_local_policy())


def _warn(problems, source: Path) -> None:
    for problem in problems:
        err.print(f"warning: {source}: {problem}", markup=False, highlight=False)


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="LLMJob YAML files.")]) -> None:
    """Check LLMJob files; print OK or every problem with its field path and line. Exit code 2 if any is invalid."""
    from llm_platform.api import SpecError, load_job
    from llm_platform.api.errors import render_problems
    from llm_platform.trainer.stages.inputs import split_warnings

    bad = 0
    for path in files:
        try:
            job = load_job(path, policy=_local_policy())
        except SpecError as e:
            bad += 1
            err.print(render_problems(e.problems, e.source), markup=False, highlight=False)
            continue
        console.print(f"{path}: OK ({job.metadata.name}, {len(job.spec.stages)} stages)", markup=False)
        _warn(split_warnings(job), path)
    raise typer.Exit(2 if bad else 0)


@app.command()
def run(
    job_file: Annotated[Path, typer.Argument(help="The LLMJob YAML file.")],
    workdir: Annotated[
        Path | None, typer.Option(help="Where artifacts go when the spec sets no storage (default: runs/<job name>).")
    ] = None,
    storage: Annotated[
        str | None, typer.Option(help="Artifact store (s3://bucket/prefix or a folder), instead of spec.storage.uri.")
    ] = None,
    from_stage: Annotated[str | None, typer.Option("--from", help="Re-run this stage and everything after it.")] = None,
    only: Annotated[str | None, typer.Option(help="Run only this stage (its inputs must be committed).")] = None,
) -> None:
    """Run an LLMJob on this machine, stage by stage; committed, up-to-date stages are skipped."""
    from llm_platform.executor import run_job
    from llm_platform.trainer.stages.inputs import split_warnings

    job = _load(job_file)
    if workdir is not None and job.spec.storage.uri and storage is None:
        raise UserError(
            f"--workdir {workdir}: {job_file} sets spec.storage.uri ({job.spec.storage.uri}), so artifacts would go "
            f"there, not to {workdir}; drop --workdir, or pass --storage {workdir} to keep them on this machine"
        )
    if storage is not None:
        job = with_storage(job, storage)
    _warn(split_warnings(job), job_file)
    outcomes = run_job(job, job_file.resolve(), workdir or Path("runs") / job.metadata.name, from_stage, only, console)
    raise typer.Exit(1 if any(o.result == "Failed" for o in outcomes) else 0)


@app.command()
def schema() -> None:
    """Print the JSON Schema of an LLMJob file, for editors (e.g. the YAML language server's `# yaml-language-server:
    $schema=`)."""
    import json

    from llm_platform.api.json_schema import job_json_schema

    typer.echo(json.dumps(job_json_schema(), indent=2))


@app.command()
def crd() -> None:
    """Print the LLMJob CustomResourceDefinition generated from the API models."""
    from llm_platform.api.crd import crd_yaml

    typer.echo(crd_yaml(), nl=False)


@app.command(hidden=True)
def reference() -> None:
    """Print the LLMJob field reference (docs/reference.md) generated from the API models."""
    from llm_platform.api.reference import reference_markdown

    typer.echo(reference_markdown())


@stage_app.command("run")
def stage_run(
    job_file: Annotated[Path, typer.Option("--job", help="The LLMJob YAML file.")],
    stage: Annotated[str, typer.Option(help="The stage to run.")],
    storage: Annotated[str | None, typer.Option(help="Artifact store URI (default: spec.storage.uri).")] = None,
) -> None:
    """Run one stage and commit its artifacts."""
    from llm_platform.storage import ArtifactStore
    from llm_platform.trainer.stages import run_stage

    job = _load(job_file)
    uri = storage or job.spec.storage.uri
    if not uri:
        raise UserError("no storage: pass --storage or set spec.storage.uri")
    try:
        job.spec.stage(stage)
    except KeyError as e:
        raise UserError(e.args[0]) from None
    # a refused setting, missing credentials, another writer, a corrupt input: the group reports it in one line.
    # This process is the stage's own, so where nobody watches a terminal (a pod, the jobs API's runs, a piped log)
    # its console output is kept in the store too (<stage>/live/console.log). In a terminal it is left alone: the
    # user sees it live, and capturing it through a pipe would turn the live progress bar into plain lines.
    capture = not os.isatty(1)
    run_stage(job, stage, ArtifactStore.open(uri, job.spec.storage.endpoint_url), capture_console=capture)


@model_app.command("presets")
def model_presets() -> None:
    """List the model presets with their sizes."""
    from rich.table import Table

    from llm_platform.trainer.model.config import PRESETS, num_params

    table = Table("preset", "params", "layers", "heads / kv", "vocab", "context")
    for name, cfg in PRESETS.items():
        table.add_row(
            name,
            f"{num_params(cfg) / 1e6:,.1f}M",
            str(cfg.n_layers),
            f"{cfg.n_heads}/{cfg.num_kv_heads}",
            str(cfg.vocab_size),
            str(cfg.max_seq_len),
        )
    console.print(table)


_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
DType = Literal["fp32", "bf16", "fp16"]


def _save_model_folder(src: Path, dest: Path, dtype: DType | None) -> None:
    """Load a Hugging Face checkpoint with our loader (so an unsupported one fails here, with the reason) and save it
    canonically to `dest`, carrying the tokenizer files along."""
    import shutil

    import torch

    from llm_platform.trainer.model.hf import load_pretrained, save_pretrained
    from llm_platform.trainer.model.hf_config import hf_family

    model = load_pretrained(src)
    save_pretrained(model, dest, dtype=getattr(torch, _DTYPES[dtype]) if dtype else None)
    for tokenizer_file in (
        "tokenizer.json",
        "tokenizer_config.json",
        "tokenizer.model",
        "tokenizer.tiktoken",
        "tiktoken_config.json",
        "special_tokens_map.json",
    ):
        if (src / tokenizer_file).is_file():
            shutil.copy2(src / tokenizer_file, dest / tokenizer_file)
    console.print(
        f"{hf_family(model.config)} model, {sum(p.numel() for p in model.parameters()) / 1e6:,.1f}M "
        f"parameters → {dest}",
        markup=False,
    )


@model_app.command("import")
def model_import(
    src: Annotated[Path, typer.Argument(help="A Hugging Face checkpoint folder (config.json + safetensors).")],
    dest: Annotated[Path, typer.Argument(help="Where to write the checked, canonical copy.")],
    dtype: Annotated[DType | None, typer.Option(help="Cast weights: fp32, bf16 or fp16.")] = None,
) -> None:
    """Check that a Llama/Mistral/Qwen2/Qwen3/Mixtral/DeepSeek-V3 checkpoint loads, and write it where a job's
    `spec.model.from` can point."""
    _save_model_folder(src, dest, dtype)


@model_app.command("export")
def model_export(
    storage: Annotated[str, typer.Argument(help="The job's artifact store URI (s3://... or a local folder).")],
    stage: Annotated[str, typer.Argument(help="The stage whose model to export, e.g. pretrain.")],
    dest: Annotated[Path, typer.Argument(help="Destination folder (Hugging Face format).")],
    dtype: Annotated[DType | None, typer.Option(help="Cast weights: fp32, bf16 or fp16.")] = None,
) -> None:
    """Write the committed model of a stage as a Hugging Face folder (loads in transformers, vLLM, PEFT)."""
    from llm_platform.storage import ArtifactStore

    folder = ArtifactStore.open(storage).fetch(stage) / "model"  # a StoreError is reported in one line
    if not folder.is_dir():
        raise UserError(f"stage '{stage}' committed no model/ folder; export a stage that trains a model")
    _save_model_folder(folder, dest, dtype)


app.add_typer(tokenizer_app, name="tokenizer", help="Train, use, inspect and convert tokenizers.")
app.add_typer(adapter_app, name="adapter", help="List, merge and combine LoRA adapters.")
app.add_typer(api_app, name="api", help="The jobs REST API's bearer tokens.")
app.add_typer(eval_app, name="eval", help="Evaluation reports: compare runs.")
app.registered_commands.extend(operator_app.registered_commands)  # `llmp render`, `llmp operator`
app.registered_commands.extend(serve_api_app.registered_commands)  # `llmp serve-api`
app.registered_commands.extend(serve_app.registered_commands)  # `llmp serve`, `llmp generate`, `llmp chat`
app.registered_commands.extend(status_app.registered_commands)  # `llmp status`


def main() -> None:
    app(prog_name="llmp")


if __name__ == "__main__":
    main()
