"""The reconcile decision, as a pure function: given the job, the status written last time and what the cluster
shows now, which children to create, delete, suspend or resume, what the new status is, and which events to post.

Truth lives in two places, and the plan reads both: a stage's terminal outcome (Succeeded, Failed, Skipped) is
recorded in status and is final (a later spec change does not re-run a finished stage; the rerun annotation does);
everything in flight is read from the children, whose names are deterministic and whose attempt number is a label.
So an operator restarted anywhere between two steps recomputes the same plan and creates nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_platform.api import JobStatus, LLMJob, StageStatus
from llm_platform.api.conditions import job_conditions
from llm_platform.api.dag import descendants, topological_order
from llm_platform.api.status import DONE, TERMINAL

from .children import ChildState


@dataclass(frozen=True)
class StageArtifacts:
    """What the artifact store shows for a stage (all optional: the operator may have no store access)."""

    checkpoint: str | None = None
    step: int | None = None
    version: str | None = None


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Plan:
    status: JobStatus
    create: list[str] = field(default_factory=list)  # stages whose child to create (attempt = status attempts)
    delete: list[str] = field(default_factory=list)  # stages whose current child to delete
    suspend: dict[str, bool] = field(default_factory=dict)  # stage -> suspend (True) or resume (False)
    events: list[Event] = field(default_factory=list)
    clear_rerun: bool = False


@dataclass(frozen=True)
class Observed:
    """Everything the plan depends on besides the job and its previous status."""

    children: dict[str, ChildState] = field(default_factory=dict)
    artifacts: dict[str, StageArtifacts] = field(default_factory=dict)
    now: str = ""
    rerun: tuple[str, ...] = ()
    queued: bool = False  # children are admitted by Kueue: a suspended child is waiting, not paused by us
    generation: int | None = None
    workload_refs: dict[str, str] = field(default_factory=dict)  # stage -> "Kind/name" it would be created as


def plan(job: LLMJob, previous: JobStatus | None, observed: Observed) -> Plan:
    previous = previous or JobStatus()
    if observed.rerun:
        return _plan_rerun(job, previous, observed)
    out = Plan(status=JobStatus())
    stages = {s.name: s for s in job.spec.stages}
    new: dict[str, StageStatus] = {}
    failed = any(s.phase == "Failed" for n, s in previous.stages.items() if n in stages)
    for name in topological_order(job.spec.stages):
        before = previous.stages.get(name, StageStatus())
        status = before.model_copy()
        child = observed.children.get(name)
        if status.phase not in TERMINAL:
            _advance(job, name, status, child, new, failed, observed, out)
        failed = failed or status.phase == "Failed"
        _stage_events(name, before, status, out)
        new[name] = status
    for name in observed.children:
        if name not in stages:  # a stage removed from the spec: its child has nothing left to do
            out.delete.append(name)
    _propagate_suspend(job, observed, out)
    out.status = _job_status(job, previous, new, observed)
    _job_events(previous, out.status, job.spec.suspend, out)
    return out


def _advance(
    job: LLMJob,
    name: str,
    status: StageStatus,
    child: ChildState | None,
    new: dict[str, StageStatus],
    failed: bool,
    observed: Observed,
    out: Plan,
) -> None:
    """Move one unfinished stage forward, in place."""
    stage = job.spec.stage(name)
    info = observed.artifacts.get(name, StageArtifacts())
    if info.checkpoint:
        status.checkpoint, status.step = info.checkpoint, info.step
    if child is not None and child.attempt < status.attempts:
        # a retry was decided: the failed attempt's child must be gone before the next one is created
        status.phase = "Pending"
        if not child.deleting:
            out.delete.append(name)
        return
    if child is not None:
        _follow(job, name, status, child, info, observed, out)
        return
    if status.attempts == 0:
        blocked = [n for n in stage.needs if new[n].phase in ("Failed", "Skipped")]
        waiting = [n for n in stage.needs if new[n].phase not in DONE]
        if blocked:
            status.phase, status.message = "Skipped", f"not run: needs {', '.join(blocked)}, which did not succeed"
        elif job.spec.suspend:
            status.phase, status.message = "Pending", "job suspended"
        elif waiting:
            status.phase, status.message = "Pending", f"waiting for {', '.join(waiting)}"
        elif failed:
            status.phase, status.message = "Pending", "not started: another stage failed"
        else:
            status.attempts = 1
            _start(job, name, status, observed, out)
        return
    # started before, and its child is gone: deleted for a retry, or by someone else; create it (again)
    if job.spec.suspend:
        status.phase, status.message = "Suspended", "job suspended; the stage continues on resume"
    else:
        _start(job, name, status, observed, out)


def _start(job: LLMJob, name: str, status: StageStatus, observed: Observed, out: Plan) -> None:
    status.phase = "Pending"
    status.child = observed.workload_refs.get(name, status.child)
    status.message = f"creating {status.child}"
    if status.attempts > 1:
        source = f"checkpoint {status.checkpoint}" if status.checkpoint else "the beginning (no checkpoint)"
        status.message += f" (attempt {status.attempts} of {job.spec.max_retries + 1}, resuming from {source})"
    status.started = status.started or observed.now
    out.create.append(name)


def _follow(
    job: LLMJob,
    name: str,
    status: StageStatus,
    child: ChildState,
    info: StageArtifacts,
    observed: Observed,
    out: Plan,
) -> None:
    """Mirror a live child's state into the stage, deciding retries of failed training."""
    stage = job.spec.stage(name)
    status.attempts = max(status.attempts, child.attempt)  # adopt a child created just before a restart
    status.child = child.ref
    status.started = status.started or child.started or observed.now
    if child.deleting:
        status.phase, status.message = "Pending", f"{child.ref} is being deleted"
        return
    if child.phase == "Succeeded":
        status.phase, status.finished = "Succeeded", child.finished or observed.now
        status.message = child.message
        status.version = info.version or status.version
        return
    if child.phase == "Failed":
        attempts_allowed = job.spec.max_retries + 1
        reason = child.message or f"{child.ref} failed"
        if stage.trains and status.attempts < attempts_allowed:
            start = f"checkpoint {status.checkpoint}" if status.checkpoint else "the beginning (no checkpoint yet)"
            status.message = (
                f"attempt {status.attempts} failed: {reason}; retrying from {start} "
                f"(attempt {status.attempts + 1} of {attempts_allowed})"
            )
            status.attempts += 1
            status.phase = "Pending"
            out.delete.append(name)
            return
        status.phase, status.finished = "Failed", child.finished or observed.now
        tried = f" after {status.attempts} attempts" if stage.trains else ""
        status.message = f"{reason}{tried}"
        return
    if child.phase == "Suspended" and observed.queued and not job.spec.suspend:
        status.phase, status.message = "Pending", "queued: waiting for Kueue to admit it"
        return
    status.phase, status.message = child.phase, child.message


def _propagate_suspend(job: LLMJob, observed: Observed, out: Plan) -> None:
    """Children follow spec.suspend. Under Kueue only suspending is ours: resuming (admission) is Kueue's."""
    want = True if job.spec.suspend else (None if observed.queued else False)
    if want is None:
        return
    for name, child in observed.children.items():
        if name in out.delete or child.deleting or child.suspended == want:
            continue
        if child.done and child.kind != "Deployment":  # a finished job has nothing left to pause; a server does
            continue
        out.suspend[name] = want


def _plan_rerun(job: LLMJob, previous: JobStatus, observed: Observed) -> Plan:
    """Reset the named stages and everything downstream of them; the next reconcile starts them afresh. Nothing is
    created in this pass, so repeating it (after a crash before the annotation was cleared) changes nothing."""
    stages = {s.name for s in job.spec.stages}
    known = [n for n in observed.rerun if n in stages]
    unknown = [n for n in observed.rerun if n not in stages]
    reset: set[str] = set(known)
    for name in known:
        reset.update(descendants(job.spec.stages, name))
    out = Plan(status=JobStatus(), clear_rerun=True)
    new: dict[str, StageStatus] = {}
    for name in topological_order(job.spec.stages):
        if name in reset:
            new[name] = StageStatus(message="rerun requested")
            if name in observed.children:
                out.delete.append(name)
        else:
            new[name] = previous.stages.get(name, StageStatus())
    if known:
        ordered = [n for n in topological_order(job.spec.stages) if n in reset]
        out.events.append(Event("Normal", "Rerun", f"running again: {', '.join(ordered)}"))
    if unknown:
        out.events.append(
            Event("Warning", "RerunIgnored", f"no stage named {', '.join(unknown)}; stages are {', '.join(stages)}")
        )
    out.status = _job_status(job, previous, new, observed)
    return out


def _job_status(job: LLMJob, previous: JobStatus, new: dict[str, StageStatus], observed: Observed) -> JobStatus:
    phases = [s.phase for s in new.values()]
    failed = [n for n, s in new.items() if s.phase == "Failed"]
    in_flight = [n for n, s in new.items() if s.phase not in TERMINAL and s.attempts > 0]
    if failed:
        phase, message = "Failed", f"stage {failed[0]} failed: {new[failed[0]].message}"
    elif all(p in DONE for p in phases):
        phase, message = "Succeeded", f"all {len(phases)} stages succeeded"
    elif job.spec.suspend:
        phase, message = "Suspended", "suspended (spec.suspend)"
    elif in_flight:
        phase, message = "Running", f"running {', '.join(in_flight)}"
    else:
        phase, message = "Pending", "waiting to start"
    generation = observed.generation if observed.generation is not None else previous.observed_generation
    return JobStatus(
        phase=phase,
        current_stage=",".join(in_flight) or None,
        stages=new,
        conditions=job_conditions(previous.conditions, phase, message, observed.now, generation),
        message=message,
        observed_generation=generation,
    )


def _stage_events(name: str, before: StageStatus, after: StageStatus, out: Plan) -> None:
    if name in out.create:
        out.events.append(Event("Normal", "StageStarted", f"stage {name}: {after.message}"))
    if before.phase == after.phase and before.attempts == after.attempts:
        return
    if after.phase == "Succeeded":
        out.events.append(Event("Normal", "StageSucceeded", f"stage {name} succeeded"))
    elif after.phase == "Failed":
        out.events.append(Event("Warning", "StageFailed", f"stage {name} failed: {after.message}"))
    elif after.attempts > before.attempts > 0:
        out.events.append(Event("Warning", "StageRetrying", f"stage {name}: {after.message}"))


def _job_events(previous: JobStatus, new: JobStatus, suspend: bool, out: Plan) -> None:
    if previous.phase == new.phase:
        return
    if new.phase == "Succeeded":
        out.events.append(Event("Normal", "Succeeded", new.message or "succeeded"))
    elif new.phase == "Failed":
        out.events.append(Event("Warning", "Failed", new.message or "failed"))
    elif new.phase == "Suspended":
        out.events.append(Event("Normal", "Suspended", "suspended: no stage starts and running children pause"))
    elif previous.phase == "Suspended" and not suspend:
        out.events.append(Event("Normal", "Resumed", "resumed"))
