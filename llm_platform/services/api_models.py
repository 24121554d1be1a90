"""The jobs API's request and response bodies as pydantic models, so /openapi.json describes every body it sends.

A job in a response is the LLMJob as stored: the spec (the same `JobSpec` model the request body is validated by)
and the status (`JobStatus`, the model the operator writes), camelCase like every Kubernetes object. A stored spec
that this version no longer accepts is answered without its spec and with status.message saying why, so one such
job never breaks a listing.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llm_platform.api import API_VERSION, KIND, JobSpec, JobStatus


class ObjectMeta(BaseModel):
    """The job's metadata; on the cluster backend also what the API server adds."""

    model_config = ConfigDict(extra="ignore")

    name: str
    namespace: str
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = Field(None, alias="resourceVersion")
    creation_timestamp: str | None = Field(None, alias="creationTimestamp")


class JobObject(BaseModel):
    """An LLMJob with its status."""

    model_config = ConfigDict(populate_by_name=True)

    api_version: Literal["llmplatform.dev/v1alpha1"] = Field(API_VERSION, alias="apiVersion")
    kind: Literal["LLMJob"] = KIND
    metadata: ObjectMeta
    spec: JobSpec | None = Field(None, description="Absent only when the stored spec no longer validates.")
    status: JobStatus | None = None

    @classmethod
    def of(cls, body: dict[str, Any]) -> JobObject:
        """The response model of a stored job (a dict as the backend holds it)."""
        job = cls.model_validate({k: v for k, v in body.items() if k != "spec"})
        if body.get("spec") is None:
            return job
        try:
            job.spec = _valid_spec(json.dumps(body["spec"], sort_keys=True))
        except ValidationError as e:
            problem = e.errors()[0]
            where = ".".join(str(p) for p in ("spec", *problem["loc"]))
            status = job.status or JobStatus()
            note = f"the stored spec no longer validates ({where}: {problem['msg']}); delete and resubmit the job"
            status.message = "\n".join(filter(None, [note, status.message]))
            job.status = status
        return job


@lru_cache(maxsize=512)
def _valid_spec(text: str) -> JobSpec:
    """A stored spec, validated once per distinct spec (validating a pipeline takes milliseconds, and a listing
    answers with every job's); responses only read it."""
    return JobSpec.model_validate_json(text)


class JobList(BaseModel):
    items: list[JobObject]


class Health(BaseModel):
    status: Literal["ok"]


class Problem(BaseModel):
    path: str | None = Field(None, description="Where: a field path (spec.stages[2].train.lr) or a request part.")
    message: str = Field(description="What is wrong and what to do.")
    line: int | None = Field(None, description="The line of a YAML body the problem is on.")
    hint: str | None = Field(None, description="What to do, when the message does not say it.")


class ErrorBody(BaseModel):
    """Every refusal: what is wrong and what to do, with each problem when there are several."""

    error: str
    problems: list[Problem] | None = None


LOG_TEXT = {
    "content": {"text/plain": {"schema": {"type": "string", "description": "Log lines, oldest first."}}},
    "description": "The log as text; with follow=true streamed (chunked) until the job or stage ends.",
}
ERRORS = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        401: "No bearer token, or one this server does not know.",
        403: "The token may not do this (read-only, or for another namespace).",
        404: "No such job (or stage).",
        422: "An invalid request or LLMJob, or one this server cannot run.",
    }.items()
}
SUBMIT_ERRORS = {
    **ERRORS,
    409: {"model": ErrorBody, "description": "A job of that name exists."},
    413: {"model": ErrorBody, "description": "The body is over the size limit."},
    429: {"model": ErrorBody, "description": "Too many jobs or bodies at once; retry after Retry-After seconds."},
}
