"""What rendering needs besides the LLMJob: cluster-wide defaults (operator flags) and per-job scheduling choices
(Kueue queue, gang-scheduling queue, priority, elastic training, a shared storage volume) read from the job's labels
and annotations, so they can be set without changing the spec's schema."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from llm_platform.api import LLMJob

from .naming import (
    ELASTIC_ANNOTATION,
    KUEUE_QUEUE_LABEL,
    PRIORITY_CLASS_ANNOTATION,
    SCHEDULING_QUEUE_ANNOTATION,
    STORAGE_CLAIM_ANNOTATION,
)


def _package_version() -> str:
    try:
        return version("llm-platform")
    except PackageNotFoundError:
        return "0.0.0"


DEFAULT_IMAGE = f"ghcr.io/llm-platform/trainer:{_package_version()}"
DEFAULT_VLLM_IMAGE = "vllm/vllm-openai:v0.11.0"
DEFAULT_RAY_VERSION = "2.60.0"
DEFAULT_TTL_SECONDS = 7 * 24 * 3600


class RenderError(ValueError):
    """A valid spec that cannot run on a cluster as written (e.g. storage no pod can reach). The message names the
    field and the fix, like `SpecError`."""


@dataclass(frozen=True)
class RenderOptions:
    """Cluster-wide defaults: the operator's flags, or `llmp render`'s."""

    image: str = DEFAULT_IMAGE
    vllm_image: str = DEFAULT_VLLM_IMAGE
    ray_version: str = DEFAULT_RAY_VERSION
    ttl_seconds_after_finished: int = DEFAULT_TTL_SECONDS
    namespace: str | None = None  # overrides metadata.namespace (e.g. `llmp render --namespace`)


@dataclass(frozen=True)
class JobOptions:
    """Per-job scheduling choices, from the LLMJob's metadata."""

    kueue_queue: str | None = None
    scheduling_queue: str | None = None
    priority_class: str | None = None
    elastic_nodes: tuple[int, int] | None = None
    storage_claim: str | None = None


_ELASTIC = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def job_options(job: LLMJob) -> JobOptions:
    meta = job.metadata
    elastic = None
    raw = meta.annotations.get(ELASTIC_ANNOTATION)
    if raw is not None:
        match = _ELASTIC.match(raw)
        if not match or not 1 <= int(match[1]) <= int(match[2]):
            raise RenderError(
                f"metadata.annotations['{ELASTIC_ANNOTATION}']: expected 'MIN:MAX' nodes with 1 <= MIN <= MAX, "
                f"got {raw!r}; e.g. '2:4'"
            )
        elastic = (int(match[1]), int(match[2]))
    return JobOptions(
        kueue_queue=meta.labels.get(KUEUE_QUEUE_LABEL) or None,
        scheduling_queue=meta.annotations.get(SCHEDULING_QUEUE_ANNOTATION) or None,
        priority_class=meta.annotations.get(PRIORITY_CLASS_ANNOTATION) or None,
        elastic_nodes=elastic,
        storage_claim=meta.annotations.get(STORAGE_CLAIM_ANNOTATION) or None,
    )


def namespace_of(job: LLMJob, options: RenderOptions) -> str:
    return options.namespace or job.metadata.namespace
