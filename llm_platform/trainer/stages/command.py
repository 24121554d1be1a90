"""The arguments of `llmp stage run`: how every environment starts one stage (`run_stage` in a fresh process).

`llmp run` starts them as local subprocesses (`executor.stage_command`) and the operator puts them in every pod
(`operator.pods.stage_args`); both build them here, so the two cannot drift from each other or from the CLI.
"""

from __future__ import annotations


def stage_run_args(job_file: str, stage: str, storage_uri: str) -> list[str]:
    """`stage run --job <file> --stage <name> --storage <uri>`, after `llmp` or `python -m llm_platform.cli`."""
    return ["stage", "run", "--job", job_file, "--stage", stage, "--storage", storage_uri]
