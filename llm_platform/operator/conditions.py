"""The LLMJob's conditions, as Kubernetes tools read them. Pure.

`Ready` is the condition kstatus, Flux and Argo CD look for: Unknown while the job is on its way (Pending, Running),
True once it succeeded, False when it failed (reason `StageFailed` or `InvalidSpec`) or is suspended. Next to it,
one condition per phase (`Running`, `Suspended`, `Succeeded`, `Failed`), True for the current one, for
`kubectl wait --for=condition=Succeeded`. A condition's lastTransitionTime moves only when its status does.
"""

from __future__ import annotations

from llm_platform.api import Condition

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
