"""The LLMJob resource: metadata, spec (storage, image, model, stages) and status.

These models are the single source of truth: the CRD, the field reference in docs/ and the REST API's request bodies are
generated from them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .base import SpecModel
from .dag import EXTERNAL, graph_problems, input_sources
from .errors import Problem
from .fields import DnsLabel, EndpointUrl, ImageRef, LabelKey, LabelValue, ReadPath, SecretName, WritePath
from .limits import MAX_STAGES
from .overrides import override_problems
from .stage import NAME_PATTERN, Stage
from .status import JobStatus

API_VERSION = "llmplatform.dev/v1alpha1"
KIND = "LLMJob"


class Metadata(BaseModel):
    """Kubernetes object metadata; fields the API server adds (uid, resourceVersion, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(
        pattern=NAME_PATTERN, max_length=30, description="Lowercase letters, digits and '-', at most 30 characters."
    )
    namespace: DnsLabel = "default"
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    annotations: dict[LabelKey, str] = Field(default_factory=dict)

    @field_validator("annotations")
    @classmethod
    def _annotations_size(cls, annotations: dict[str, str]) -> dict[str, str]:
        if sum(len(k) + len(v) for k, v in annotations.items()) > 256 * 1024:
            raise ValueError("annotations may hold at most 256 KiB in all (the Kubernetes limit)")
        return annotations


class StorageSpec(SpecModel):
    uri: WritePath | None = Field(
        None,
        description="Where artifacts live: s3://bucket/prefix or file:///path. Locally defaults to the workdir. On a "
        "cluster or a jobs server an s3:// store must lie under a prefix the operator allows the job's namespace "
        "(flag --allow-storage-prefix, chart value operator.allow.storagePrefixes; by default s3://BUCKET/NAMESPACE/...).",
    )
    secret_ref: SecretName | None = Field(
        None,
        description="Kubernetes Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and optional AWS_ENDPOINT_URL); "
        "the operator's allow-list (flag --allow-secret, chart value operator.allow.secrets) names those jobs may use.",
    )
    endpoint_url: EndpointUrl | None = Field(
        None,
        description="S3-compatible endpoint (MinIO, Ceph, ...) the storage credentials are sent to; only one the "
        "operator's allow-list names (flag --allow-storage-endpoint, chart value operator.allow.storageEndpoints). "
        "Leave it out to use the storage Secret's AWS_ENDPOINT_URL, or AWS S3.",
    )


class ModelSpec(SpecModel):
    preset: str | None = Field(None, description="A named architecture, e.g. llama-125m (see `llmp model presets`).")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="Fields of the model config to change (typed like the preset's fields)."
    )
    from_: ReadPath | None = Field(
        None, alias="from", description="Start from this Hugging Face-format checkpoint (URI)."
    )

    @model_validator(mode="after")
    def _known(self) -> ModelSpec:
        from llm_platform.trainer.model.config import unknown_preset_problem

        if (self.preset is None) == (self.from_ is None):
            raise ValueError("give exactly one of `preset` (a new model) or `from` (an existing checkpoint)")
        problem = self.preset and unknown_preset_problem(self.preset)
        if problem:
            raise ValueError(problem)
        values, problems = override_problems(self.overrides, self.preset)
        if problems:
            raise PydanticCustomError(
                "model_overrides", "{count} problem(s) in the overrides", {"count": len(problems), "problems": problems}
            )
        self.__dict__["overrides"] = values  # the validated values (no re-validation on assignment)
        return self


class JobSpec(SpecModel):
    storage: StorageSpec = Field(default_factory=StorageSpec)
    image: ImageRef | None = Field(None, description="Default container image for every stage (cluster runs).")
    model: ModelSpec | None = Field(None, description="The model architecture, or a checkpoint to start from.")
    stages: list[Stage] = Field(min_length=1, max_length=MAX_STAGES)
    suspend: bool = Field(False, description="Pause the job: no new stage starts and running children are suspended.")
    cleanup: Literal["keep", "delete"] = Field("keep", description="On deletion: keep or delete stored artifacts.")
    max_retries: int = Field(
        2, ge=0, le=100, description="Retries of a failed training stage from its last checkpoint."
    )

    @model_validator(mode="after")
    def _graph(self) -> JobSpec:
        external = ["model"] if self.model is not None and self.model.from_ else []
        problems = graph_problems(self.stages, external)
        if any(s.kind == "pretrain" for s in self.stages) and (self.model is None or self.model.preset is None):
            problems.append(_problem_no_preset(self.stages))
        if not problems and external and self.model.overrides:
            problems.extend(_overrides_not_applied(self.stages))
        if problems:
            raise PydanticCustomError(
                "job_graph", "{count} problem(s) in the stage graph", {"count": len(problems), "problems": problems}
            )
        return self

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage named '{name}'; stages are: {', '.join(s.name for s in self.stages)}")


def _problem_no_preset(stages: list[Stage]) -> Problem:
    i = next(i for i, s in enumerate(stages) if s.kind == "pretrain")
    return Problem(("spec", "model"), f"stages[{i}] pretrains a new model; set spec.model.preset (e.g. llama-125m)")


def _overrides_not_applied(stages: list[Stage]) -> list[Problem]:
    """spec.model.overrides change the `from` checkpoint as stages load it; a serve stage hands the checkpoint
    folder to its engine as it is, so overrides would be silently lost there."""
    return [
        Problem(
            ("spec", "model", "overrides"),
            f"stage '{stage.name}' serves spec.model.from as it is and cannot apply overrides; fine-tune with them "
            "first (a finetune stage in its needs), or remove them",
        )
        for stage in stages
        if stage.kind == "serve" and input_sources(stages, stage.name, ["model"]).get("model") == EXTERNAL
    ]


class LLMJob(BaseModel):
    """An LLM pipeline as a Kubernetes-style resource."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    api_version: Literal["llmplatform.dev/v1alpha1"] = Field(API_VERSION, alias="apiVersion")
    kind: Literal["LLMJob"] = KIND
    metadata: Metadata
    spec: JobSpec
    status: JobStatus | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
