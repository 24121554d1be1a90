"""The LLMJob's conditions, as Kubernetes tools read them: one definition for the operator (which writes them into
the LLMJob's status) and the jobs API's local backend (which answers them from the job's history). Pure.

`Ready` is the condition kstatus, Flux and Argo CD look for: Unknown while the job is on its way (Pending, Running),
True once it succeeded, False when it failed (reason `StageFailed` or `InvalidSpec`) or is suspended. Next to it,
one condition per phase (`Running`, `Suspended`, `Succeeded`, `Failed`), True for the current one, for
`kubectl wait --for=condition=Succeeded`. A condition's lastTransitionTime moves only when its status does.
"""

from __future__ import annotations

from datetime import UTC, datetime

from .status import Condition

PHASE_TYPES = ("Running", "Suspended", "Succeeded", "Failed")
READY = "Ready"
MESSAGE_LIMIT = 32768  # metav1.Condition's bound on message
# phase -> (Ready's status, its reason when the caller gives none)
READINESS = {
    "Pending": ("Unknown", "Pending"),
    "Running": ("Unknown", "Running"),
    "Suspended": ("False", "Suspended"),
    "Succeeded": ("True", "Succeeded"),
    "Failed": ("False", "StageFailed"),
}


def job_conditions(
    previous: list[Condition],
    phase: str,
    message: str,
    now: str,
    generation: int | None,
    reason: str | None = None,
) -> list[Condition]:
    """`Ready` first, then one condition per phase type; `reason` overrides Ready's (e.g. InvalidSpec)."""
    before = {c.type: c for c in previous}
    ready, ready_reason = READINESS[phase]
    message = message[:MESSAGE_LIMIT]
    wanted = [(READY, ready, reason or ready_reason, message)]
    for kind in PHASE_TYPES:
        wanted.append((kind, "True" if kind == phase else "False", phase, message if kind == phase else ""))
    out = []
    for kind, status, why, text in wanted:
        old = before.get(kind)
        moved = old is None or old.status != status
        out.append(
            Condition(
                type=kind,
                status=status,
                reason=why,
                message=text,
                last_transition_time=now if moved else old.last_transition_time,
                observed_generation=generation,
            )
        )
    return out


def conditions_over(history: list[tuple[str, str]], message: str) -> list[Condition]:
    """The conditions of a job that went through `history`, [(phase, when it began (RFC 3339)), ...] oldest first,
    its last entry the phase it is in now (with `message`): `job_conditions` applied at each change, as an operator
    watching it would have, so each lastTransitionTime is when that condition's status last moved."""
    conditions: list[Condition] = []
    for i, (phase, when) in enumerate(history):
        conditions = job_conditions(conditions, phase, message if i == len(history) - 1 else "", when, None)
    return conditions


def rfc3339(seconds: float) -> str:
    """A Unix time as a condition's time: `2026-01-02T03:04:05Z` (what metav1.Time serialises to)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
