"""What a child workload's status says, in the LLMJob's terms; and the patch that suspends or resumes it.

Each engine reports progress its own way (PyTorchJob conditions, RayJob `jobDeploymentStatus` / `jobStatus`, batch
Job conditions, Deployment availability); `child_state` maps them all onto the stage phases of `StageStatus`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .naming import SUSPENDED_ANNOTATION, attempt_of


@dataclass(frozen=True)
class ChildState:
    kind: str
    name: str
    attempt: int
    phase: str  # Pending | Running | Succeeded | Failed | Suspended
    message: str | None = None
    started: str | None = None
    finished: str | None = None
    suspended: bool = False  # what the child's own suspend switch says (not whether pods are gone yet)
    deleting: bool = False

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def done(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


def _true(conditions: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == kind and c.get("status") == "True"), None)


def _pytorchjob(spec: dict, status: dict) -> tuple[str, str | None, str | None, str | None, bool]:
    conditions = status.get("conditions") or []
    suspended = bool((spec.get("runPolicy") or {}).get("suspend"))
    started, finished = status.get("startTime"), status.get("completionTime")
    for kind, phase in (("Succeeded", "Succeeded"), ("Failed", "Failed"), ("Suspended", "Suspended")):
        cond = _true(conditions, kind)
        if cond is not None:
            end = finished or (cond.get("lastTransitionTime") if phase != "Suspended" else None)
            return phase, cond.get("message"), started, end, suspended
    for kind in ("Restarting", "Running"):
        cond = _true(conditions, kind)
        if cond is not None:
            return "Running", cond.get("message"), started, None, suspended
    return ("Suspended" if suspended else "Pending"), None, started, None, suspended


def _rayjob(spec: dict, status: dict) -> tuple[str, str | None, str | None, str | None, bool]:
    """The Ray job's own status decides success and failure; the deployment status tells the cluster's life."""
    deployment = status.get("jobDeploymentStatus") or ""
    job_status = status.get("jobStatus") or ""
    message = status.get("message") or status.get("reason") or None
    suspended = bool(spec.get("suspend"))
    started, finished = status.get("startTime"), status.get("endTime")
    if job_status == "SUCCEEDED":
        return "Succeeded", message, started, finished, suspended
    if (job_status in ("FAILED", "STOPPED") and deployment != "Retrying") or deployment in (
        "Failed",
        "ValidationFailed",
    ):
        return "Failed", message or f"Ray job {(job_status or deployment).lower()}", started, finished, suspended
    if deployment in ("Suspended", "Suspending"):
        return "Suspended", message, started, None, suspended
    if deployment in ("Running", "Retrying"):
        return "Running", message, started, None, suspended
    return ("Suspended" if suspended else "Pending"), message, started, None, suspended


def _batch_job(spec: dict, status: dict) -> tuple[str, str | None, str | None, str | None, bool]:
    conditions = status.get("conditions") or []
    suspended = bool(spec.get("suspend"))
    started = status.get("startTime")
    complete = _true(conditions, "Complete")
    if complete is not None:
        return "Succeeded", complete.get("message"), started, status.get("completionTime"), suspended
    failed = _true(conditions, "Failed")
    if failed is not None:
        message = failed.get("message") or failed.get("reason")
        return "Failed", message, started, failed.get("lastTransitionTime"), suspended
    if _true(conditions, "Suspended") is not None or suspended:
        return "Suspended", None, started, None, suspended
    if status.get("active"):
        return "Running", None, started, None, suspended
    return "Pending", None, started, None, suspended


def _deployment(meta: dict, spec: dict, status: dict) -> tuple[str, str | None, str | None, str | None, bool]:
    """A serving stage is done ("Succeeded") once its rollout is complete: every replica updated and available."""
    suspended = (meta.get("annotations") or {}).get(SUSPENDED_ANNOTATION) == "true"
    if suspended:
        return "Suspended", "scaled to zero while the job is suspended", None, None, True
    conditions = status.get("conditions") or []
    progressing = next((c for c in conditions if c.get("type") == "Progressing"), None)
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return "Failed", progressing.get("message"), None, progressing.get("lastTransitionTime"), False
    want = spec.get("replicas", 1)
    available = _true(conditions, "Available")
    ready = min(status.get("updatedReplicas") or 0, status.get("availableReplicas") or 0)
    message = f"{ready}/{want} replicas available"
    if want == 0 or (available is not None and ready >= want):
        return "Succeeded", message, None, (available or {}).get("lastTransitionTime"), False
    return "Running", message, None, None, False


def child_state(obj: dict[str, Any]) -> ChildState:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    kind = obj.get("kind", "")
    if kind == "PyTorchJob":
        phase, message, started, finished, suspended = _pytorchjob(spec, status)
    elif kind == "RayJob":
        phase, message, started, finished, suspended = _rayjob(spec, status)
    elif kind == "Job":
        phase, message, started, finished, suspended = _batch_job(spec, status)
    elif kind == "Deployment":
        phase, message, started, finished, suspended = _deployment(meta, spec, status)
    else:
        raise ValueError(f"not a stage workload: {kind or 'an object without kind'}")
    return ChildState(
        kind=kind,
        name=meta.get("name", ""),
        attempt=attempt_of(obj),
        phase=phase,
        message=message,
        started=started,
        finished=finished,
        suspended=suspended,
        deleting=bool(meta.get("deletionTimestamp")),
    )


def suspend_patch(kind: str, suspend: bool, replicas: int = 1) -> dict[str, Any]:
    """A merge patch that suspends or resumes a child. Deployments have no `suspend`: they are scaled to zero and
    marked, and scaled back to `replicas` on resume."""
    if kind == "PyTorchJob":
        return {"spec": {"runPolicy": {"suspend": suspend}}}
    if kind in ("RayJob", "Job"):
        return {"spec": {"suspend": suspend}}
    if kind == "Deployment":
        return {
            "metadata": {"annotations": {SUSPENDED_ANNOTATION: "true" if suspend else None}},
            "spec": {"replicas": 0 if suspend else replicas},
        }
    raise ValueError(f"cannot suspend a {kind}")
