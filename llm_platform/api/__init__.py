"""The LLMJob API: pydantic models (the contract), loading with readable errors, the stage graph, the CRD."""

from .errors import Problem, SpecError
from .job import API_VERSION, KIND, Condition, JobSpec, JobStatus, LLMJob, Metadata, ModelSpec, StageStatus, StorageSpec
from .load import load_job, parse_job, parse_job_text
from .policy import TRUSTED, Credential, SpecPolicy
from .stage import OUTPUTS, SECTIONS, STAGE_KINDS, Stage

__all__ = [
    "API_VERSION",
    "KIND",
    "OUTPUTS",
    "TRUSTED",
    "SECTIONS",
    "STAGE_KINDS",
    "Condition",
    "Credential",
    "JobSpec",
    "JobStatus",
    "LLMJob",
    "Metadata",
    "ModelSpec",
    "Problem",
    "SpecError",
    "SpecPolicy",
    "Stage",
    "StageStatus",
    "StorageSpec",
    "load_job",
    "parse_job",
    "parse_job_text",
]
