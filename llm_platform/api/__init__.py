"""The LLMJob API: pydantic models (the contract), loading with readable errors, the stage graph, the CRD."""

from .errors import Problem, SpecError
from .job import API_VERSION, KIND, JobSpec, LLMJob, Metadata, ModelSpec, StorageSpec
from .load import load_job, parse_job, parse_job_text
from .policy import TRUSTED, Credential, SpecPolicy
from .stage import OUTPUTS, SECTIONS, STAGE_KINDS, Stage
from .status import STAGE_PHASES, Condition, JobPhase, JobStatus, StagePhase, StageStatus

__all__ = [
    "API_VERSION",
    "KIND",
    "OUTPUTS",
    "TRUSTED",
    "SECTIONS",
    "STAGE_PHASES",
    "STAGE_KINDS",
    "Condition",
    "Credential",
    "JobPhase",
    "JobSpec",
    "JobStatus",
    "LLMJob",
    "Metadata",
    "ModelSpec",
    "Problem",
    "SpecError",
    "SpecPolicy",
    "Stage",
    "StagePhase",
    "StageStatus",
    "StorageSpec",
    "load_job",
    "parse_job",
    "parse_job_text",
]
