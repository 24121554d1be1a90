"""The embedded executor behind `llmp run`: the stage graph on one machine, one subprocess per stage.

Each stage runs as `python -m llm_platform.cli stage run --job ... --stage ...`, exactly the command a pod runs on a
cluster (under torchrun when a training stage asks for several local GPUs). A stage whose committed artifacts match
its settings and inputs is skipped, so an interrupted job resumes where it stopped.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from llm_platform.api import LLMJob, StagePhase, StageStatus
from llm_platform.api.dag import ancestors, descendants, topological_order
from llm_platform.api.status import progress_key
from llm_platform.observability.console import make_console
from llm_platform.run_summary import print_summary
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.stages.command import stage_run_args

__all__ = ["StageOutcome", "run_job", "stage_command", "stages_to_force"]


@dataclass
class StageOutcome:
    name: str
    kind: str
    result: StagePhase  # Succeeded, UpToDate, Failed or Skipped (a stage it needs failed): see api.status
    seconds: float = 0.0
    reason: str = ""
    metrics: dict = field(default_factory=dict)


def storage_uri(job: LLMJob, workdir: Path) -> str:
    return job.spec.storage.uri or f"file://{workdir.resolve()}"


def stages_to_force(job: LLMJob, from_stage: str | None, only: str | None) -> tuple[list[str], set[str]]:
    """Which stages to consider, in order, and which of them to re-run even if committed. Pure."""
    order = topological_order(job.spec.stages)
    for name in (from_stage, only):
        if name is not None and name not in order:
            raise ValueError(f"no stage named '{name}'; stages are: {', '.join(order)}")
    if only is not None:
        return [only], {only}
    if from_stage is not None:
        return order, {from_stage, *descendants(job.spec.stages, from_stage)}
    return order, set()


def stages_that_may_run(job: LLMJob, order: list[str], due: set[str]) -> list[str]:
    """The stages of `order` that are due, plus those downstream of one (a re-run input makes them stale). Pure."""
    affected = set(due)
    for name in due:
        affected.update(descendants(job.spec.stages, name))
    return [name for name in order if name in affected]


def stage_command(job_path: Path, stage: str, uri: str, local_gpus: int = 0) -> list[str]:
    """The command line of one stage: what a pod runs, here in a subprocess."""
    cmd = ["-m", "llm_platform.cli", *stage_run_args(str(job_path), stage, uri)]
    if local_gpus > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={local_gpus}", *cmd]
    return [sys.executable, *cmd]


def run_job(
    job: LLMJob,
    job_path: Path,
    workdir: Path,
    from_stage: str | None = None,
    only: str | None = None,
    console: Console | None = None,
) -> list[StageOutcome]:
    from llm_platform.trainer.stages import is_up_to_date
    from llm_platform.trainer.stages.preflight import check

    console = console or make_console()
    uri = storage_uri(job, workdir)
    check(job, [], uri, source=str(job_path))  # credentials first: reading what is committed needs them
    store = ArtifactStore.open(uri, job.spec.storage.endpoint_url)
    order, forced = stages_to_force(job, from_stage, only)
    # read once; a stage is read again only if one of its ancestors runs below (its inputs then change)
    freshness = {name: is_up_to_date(job, name, store) for name in order if name not in forced}
    stale = {name for name, (fresh, _) in freshness.items() if not fresh}
    check(job, stages_that_may_run(job, order, forced | stale), uri, source=str(job_path), store=store)
    ran: set[str] = set()
    outcomes: list[StageOutcome] = []
    console.rule(f"[bold]LLMJob {job.metadata.name}[/] → {escape(uri)}")
    failed = False
    for name in order:
        stage = job.spec.stage(name)
        if failed:
            outcomes.append(StageOutcome(name, stage.kind, "Skipped", reason="an earlier stage failed"))
            record_phase(store, name, "Skipped", "not run: an earlier stage failed")
            continue
        if name not in forced:
            inputs_changed = ran & set(ancestors(job.spec.stages, name))
            fresh, why = is_up_to_date(job, name, store) if inputs_changed else freshness[name]
            if fresh:
                manifest = store.manifest(name)
                console.print(f"[dim]⏭  {name} ({stage.kind}): up to date, {why}[/]")
                outcomes.append(
                    StageOutcome(name, stage.kind, "UpToDate", reason=why, metrics=manifest.meta.get("metrics", {}))
                )
                record_phase(store, name, "UpToDate", f"not run: up to date, {why}")
                continue
        console.print(f"[bold cyan]▶  {name}[/] ({stage.kind})")
        t0 = time.perf_counter()
        gpus = _local_gpus(stage) if stage.trains else 0
        code = subprocess.call(stage_command(job_path, name, uri, gpus), preexec_fn=_die_with_parent)
        seconds = time.perf_counter() - t0
        if code != 0:
            reason = f"exit code {code}" if code > 0 else f"killed by signal {-code}"
            console.print(f"[bold red]✗  {name} failed[/] ({reason}) after {seconds:.1f}s")
            outcomes.append(StageOutcome(name, stage.kind, "Failed", seconds, reason))
            record_phase(store, name, "Failed", reason)  # unless the stage wrote its own, fuller, last word
            failed = True
            continue
        ran.add(name)
        manifest = store.manifest(name)
        outcomes.append(StageOutcome(name, stage.kind, "Succeeded", seconds, metrics=manifest.meta.get("metrics", {})))
        console.print(f"[bold green]✓  {name}[/] in {seconds:.1f}s")
    print_summary(console, outcomes, store)
    return outcomes


def record_phase(store: ArtifactStore, stage: str, phase: StagePhase, message: str) -> None:
    """Record in the stage's progress file what this run did with a stage it did not start (UpToDate, Skipped) or
    that died without saying so (Failed), so `llmp status` shows this run's words; the rest of what the file said
    (times, steps, artifact paths) is kept, and a file that already says `phase` is left as it is."""
    try:
        previous = StageStatus.model_validate(store.read_json(progress_key(stage)) or {})
    except (ValueError, OSError):  # an unreadable file is replaced
        previous = StageStatus()
    if previous.phase == phase:
        return
    status = previous.model_copy(update={"phase": phase, "message": message})
    store.write_json(progress_key(stage), status.model_dump(mode="json", exclude_none=True))


def _local_gpus(stage) -> int:
    if stage.train is not None and stage.train.parallel.launcher == "ray":
        return 0  # one process: it starts Ray Train, whose workers take the GPUs
    wanted = max(stage.resources.gpus, stage.train.parallel.gpus_per_node if stage.train else 0)
    if wanted <= 1:
        return 0
    try:
        import torch

        return min(wanted, torch.cuda.device_count())
    except ImportError:
        return 0


def _die_with_parent() -> None:
    """Linux: the stage process gets SIGKILL when `llmp run` dies, so no orphan keeps writing."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
