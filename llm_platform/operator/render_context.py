"""What one stage's render reads, worked out once and passed to every piece of it (as `StageContext` is to a runner).

The job's operator annotations (`JobOptions`), its namespace and the child's name are derived here, once per stage
render, instead of by each function that needs them; the record is frozen, so no piece can change what the next one
sees.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_platform.api import LLMJob, Stage

from .naming import child_name
from .options import JobOptions, RenderOptions, job_options, namespace_of


@dataclass(frozen=True)
class RenderContext:
    """One stage of one job, rendered with `options`; `attempt` numbers the child, `owner_uid` (None in a dry run,
    where the job has no uid yet) makes the LLMJob its controlling owner."""

    job: LLMJob
    stage: Stage
    options: RenderOptions
    jopts: JobOptions
    namespace: str
    attempt: int = 1
    owner_uid: str | None = None

    @classmethod
    def of(
        cls,
        job: LLMJob,
        stage: Stage | str,
        options: RenderOptions | None = None,
        *,
        attempt: int = 1,
        owner_uid: str | None = None,
    ) -> RenderContext:
        options = options or RenderOptions()
        stage = job.spec.stage(stage) if isinstance(stage, str) else stage
        return cls(job, stage, options, job_options(job), namespace_of(job, options), attempt, owner_uid)

    @property
    def child_name(self) -> str:
        """The name of the stage's workload (and of the Service and autoscaler that go with a serving one)."""
        return child_name(self.namespace, self.job.metadata.name, self.stage.name)

    @property
    def image(self) -> str:
        """The stage's container image: its own, else the job's, else the operator's default."""
        return self.stage.image or self.job.spec.image or self.options.image
