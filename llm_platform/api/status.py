"""The status of an LLMJob and of each of its stages: one vocabulary for every scheduler.

The operator writes it into the LLMJob's `status`, the jobs API returns it, `llmp run` reports its outcomes in it,
and each running stage writes its own `StageStatus` to `<stage>/progress.json` in the artifact store (read by
`llmp status`). So a word means the same thing wherever it is shown:

- `Pending`: not started (waiting for the stages it needs, queued, or being created);
- `Running`: its process or workload runs now;
- `Succeeded`: it ran in this job and committed its artifacts;
- `UpToDate`: it did not run because its committed artifacts already match its settings and inputs;
- `Failed`: it ran and failed;
- `Skipped`: it did not run because a stage it needs failed (or was itself skipped);
- `Suspended`: the job is suspended and the stage waits for it to resume.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

StagePhase = Literal["Pending", "Running", "Succeeded", "UpToDate", "Failed", "Suspended", "Skipped"]
JobPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Suspended"]

STAGE_PHASES: tuple[StagePhase, ...] = get_args(StagePhase)
# A stage in one of these phases is finished for this job: it never changes again unless the job is re-run.
TERMINAL: tuple[StagePhase, ...] = ("Succeeded", "UpToDate", "Failed", "Skipped")
# A stage in one of these phases has its artifacts committed: the stages that need it may start.
DONE: tuple[StagePhase, ...] = ("Succeeded", "UpToDate")

PROGRESS_FILE = "progress.json"


def progress_key(stage: str) -> str:
    """Where a stage's live `StageStatus` lives in the artifact store, next to its manifest."""
    return f"{stage}/{PROGRESS_FILE}"


class StatusModel(BaseModel):
    """Status as Kubernetes tools read it: camelCase keys (`observedGeneration`, `totalSteps`) when dumped with
    `by_alias=True`; snake_case (as older operators wrote it) is still read."""

    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True)


class StageStatus(StatusModel):
    phase: StagePhase = "Pending"
    child: str | None = Field(None, description="The workload running the stage, as Kind/name.")
    started: str | None = None
    finished: str | None = None
    message: str | None = None
    attempts: int = 0
    step: int | None = Field(None, description="The training step reached (last checkpoint or progress line).")
    total_steps: int | None = Field(None, description="Steps the stage will run in all, when it knows.")
    updated: str | None = Field(None, description="When the stage last reported progress (ISO 8601, UTC).")
    eta_s: float | None = Field(
        None, alias="etaSeconds", description="Seconds the stage expects to need still, from its pace so far."
    )
    checkpoint: str | None = None
    version: str | None = Field(None, description="Version id of the committed artifacts.")
    metrics: dict[str, Any] | None = Field(None, description="The metrics recorded in its committed manifest.")
    artifacts: dict[str, str] | None = Field(
        None, description="Where to look while or after it runs: name -> URI or local path (logs, model, report)."
    )


class Condition(StatusModel):
    """A Kubernetes condition (metav1.Condition), the shape kstatus, Flux and Argo CD read."""

    type: str = Field(description="Ready (True once the job succeeded), or one of the phases.")
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    message: str = Field("", max_length=32768)
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(None, description="The metadata.generation this condition was set for.")


class JobStatus(StatusModel):
    phase: JobPhase = "Pending"
    current_stage: str | None = Field(None, description="The stages in flight, comma-separated.")
    stages: dict[str, StageStatus] = Field(default_factory=dict)
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    message: str | None = None
    observed_generation: int | None = Field(None, description="The metadata.generation this status was written for.")

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)
