"""`llmp status`: where a job is, read from its artifact store while it runs or after.

Every running stage keeps `<stage>/progress.json` current (see `trainer.stages.progress`), and `llmp run` records
there the stages it found up to date or skipped; this command reads those files and the committed manifests, from a
local workdir or from S3 alike, and shows each stage's state, step, ETA and where its artifacts are. For a failed
stage whose output was kept (a stage keeps it where its output is not a terminal: a pod, the jobs API's runs, a
piped `llmp run`) it also shows the end of its console (`<stage>/live/console.log`, after `console.1.log` when it
was rotated; at most `CONSOLE_READ_BYTES` of them, by ranged reads): the error, or what a process that died without
one last printed, still there once the pod that ran it is gone.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from llm_platform.cli_errors import UserError
from llm_platform.observability.console import make_console

if TYPE_CHECKING:  # importing the API's models costs every `llmp` command ~0.2 s; the command imports them itself
    from llm_platform.api.status import JobStatus, StageStatus

app = typer.Typer()
console = make_console()
err = make_console(stderr=True)

TAIL_LINES, TAIL_WIDTH = 8, 300  # of a failed stage's console: where its error is, not a screenful of traceback
CONSOLE_READ_BYTES = 256 << 10  # read of its end (both rotated files): the job's pods wrote it, so it is bounded
TRACEBACK = "Traceback (most recent call last):"


@app.command()
def status(
    target: Annotated[
        str, typer.Argument(help="An LLMJob YAML file, a workdir of `llmp run`, or a storage URI (s3://, file://).")
    ],
    workdir: Annotated[
        Path | None, typer.Option(help="For a job file without spec.storage: its workdir (default: runs/<name>).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON (a JobStatus).")] = False,
) -> None:
    """Show each stage's state, step, ETA and artifact paths, while the job runs or after it ended."""
    from llm_platform.services.stored_console import console_lines, stored_console
    from llm_platform.storage import ArtifactStore, StoreError
    from llm_platform.trainer.stages.console_log import CONSOLE_FILE
    from llm_platform.trainer.stages.progress import (
        MAX_STORED_STAGES,
        job_status_from_store,
        read_stage_status,
        stored_stages,
    )

    uri, endpoint, names = _where(target, workdir)
    from_job = bool(names)
    try:
        store = ArtifactStore.open(uri, endpoint)
        if not names:
            names, more = stored_stages(store)
            if more:
                err.print(
                    f"{uri}: more than {MAX_STORED_STAGES:,} entries at its top level; only the first were looked "
                    "at for stages (give the job's YAML file to name its stages)",
                    markup=False,
                )
        stages = {name: read_stage_status(store, name) for name in names}
        if not from_job:  # a workdir or URI: in the order the stages started
            stages = dict(sorted(stages.items(), key=lambda kv: (kv[1].started or "~", kv[0])))
        job = job_status_from_store(stages)
    except (StoreError, OSError, ValueError) as e:
        err.print(f"{target}: cannot read the job's status from {uri}: {e}", markup=False)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps({"storage": uri, **job.model_dump(mode="json", exclude_none=True)}, indent=2))
        return
    if not stages:
        console.print(f"{uri}: no stage has started here yet", markup=False)
        return
    console.print(f"[bold]{job.phase}[/] {escape(job.message or '')} [dim]({escape(uri)})[/]", soft_wrap=True)
    console.print(status_table(job))
    for line in artifact_lines(job):
        console.print(line, soft_wrap=True, markup=False)  # whole paths, to copy
    for name, s in job.stages.items():
        if s.phase == "Failed" and (s.artifacts or {}).get(CONSOLE_FILE):
            where = s.artifacts[CONSOLE_FILE]
            try:
                stored = stored_console(store, name, CONSOLE_READ_BYTES)
            except Exception as e:  # noqa: BLE001  # the status is shown; only this extra is missing
                err.print(f"{name}: cannot read its console {where}: {type(e).__name__}: {e}", markup=False)
                continue
            if stored is not None and stored[0]:
                console.print(f"\n{name} failed; the end of its console ({where}):", markup=False)
                text = "".join(console_lines(*stored))
                console.print("\n".join(console_end(text)), soft_wrap=True, markup=False)


def status_table(job: JobStatus, now: datetime | None = None) -> Table:
    from llm_platform.run_summary import COLORS

    table = Table()
    for column in ("stage", "state", "step", "ETA", "updated", "message"):
        table.add_column(column)
    now = now or datetime.now(UTC)
    for name, s in job.stages.items():
        color = COLORS.get(s.phase, "default")
        # the message and the time are what the job's pods wrote: text, not markup
        cells = (step_text(s), eta_text(s), escape(ago(s.updated, now)), escape(s.message or ""))
        table.add_row(name, f"[{color}]{s.phase}[/]", *cells)
    return table


def step_text(s: StageStatus) -> str:
    """`120/1000` (a known total), `120`, or nothing. Pure."""
    if s.step is None:
        return ""
    return f"{s.step:,}/{s.total_steps:,}" if s.total_steps else f"{s.step:,}"


def eta_text(s: StageStatus) -> str:
    from llm_platform.trainer.progress import duration

    return duration(s.eta_s) if s.phase == "Running" and s.eta_s is not None else ""


def ago(when: str | None, now: datetime) -> str:
    """How long ago an ISO time was: `12 s ago`; a time it cannot read (the job's pods wrote it), as written. Pure."""
    from llm_platform.trainer.progress import duration

    if not when:
        return ""
    try:
        seconds = (now - datetime.fromisoformat(when)).total_seconds()
    except (ValueError, TypeError):  # not ISO 8601, or without a time zone
        return when[:TAIL_WIDTH]
    return f"{duration(max(0.0, seconds))} ago"


def artifact_lines(job: JobStatus) -> list[str]:
    """`<stage> <artifact>: <path>`, one per artifact, for every stage that has any. Pure."""
    return [
        f"{name} {artifact}: {where}"
        for name, s in job.stages.items()
        for artifact, where in sorted((s.artifacts or {}).items())
    ]


def console_end(text: str, lines: int = TAIL_LINES) -> list[str]:
    """What a failed stage's console ends with: its last `lines` printed lines, then, where it ended in a traceback,
    only the traceback's exception (the whole is in the file); each line cut to a screen's width. Pure."""
    from llm_platform.services.run_log import failure_cause

    printed, cause = text.splitlines(), []
    starts = [i for i, line in enumerate(printed) if line.startswith(TRACEBACK)]
    if starts:
        printed, cause = printed[: starts[-1]], failure_cause(printed[starts[-1] :])
    kept = [line for line in printed if line.strip()][-lines:] + cause
    return [line if len(line) <= TAIL_WIDTH else line[: TAIL_WIDTH - 1] + "…" for line in kept]


def _where(target: str, workdir: Path | None) -> tuple[str, str | None, list[str]]:
    """The store's URI, its S3 endpoint and (for a job file) its stages in order; for a folder or a URI, the stages
    are read from the store (and an S3 endpoint from the environment, AWS_ENDPOINT_URL)."""
    if target.startswith("s3://"):
        return target, None, []
    path = Path(target.removeprefix("file://"))
    if path.is_dir():
        return f"file://{path.resolve()}", None, []
    if not path.is_file():
        raise UserError(f"{target}: no such job file or workdir; give an LLMJob YAML file, a workdir or an s3:// URI")
    from llm_platform.api import load_job
    from llm_platform.api.dag import topological_order
    from llm_platform.api.policy import SpecPolicy

    job = load_job(path, policy=SpecPolicy.from_env(strict=False))  # a SpecError is the group's one-line report
    folder = workdir or Path("runs") / job.metadata.name
    storage = job.spec.storage
    return storage.uri or f"file://{folder.resolve()}", storage.endpoint_url, topological_order(job.spec.stages)
