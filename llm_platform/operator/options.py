"""What rendering needs besides the LLMJob: cluster-wide defaults (operator flags) and per-job scheduling choices
(Kueue queue, gang-scheduling queue, priority, elastic training, a shared storage volume) read from the job's labels
and annotations, so they can be set without changing the spec's schema."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from llm_platform.api import LLMJob, Problem
from llm_platform.api.errors import Loc
from llm_platform.api.policy import endpoint_entry_problem, store_prefix_entry_problem

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
# Modules the trainer image provides beyond the core dependencies, as preflight names them: images/trainer/Dockerfile
# installs the extras ray, eval, data, serve and gpu (DeepSpeed, torchao, bitsandbytes: what QLoRA on CUDA and paged
# 8-bit optimizers run on).
DEFAULT_IMAGE_PACKAGES = (
    "ray",
    "lm_eval",
    "pyarrow",
    "datasets",
    "lingua",
    "openai",
    "fastapi",
    "deepspeed",
    "torchao",
    "bitsandbytes",
)
DEFAULT_ALLOWED_SECRETS = ("s3-credentials",)
DEFAULT_STORAGE_PREFIXES = ("s3://*/{namespace}",)


class RenderError(ValueError):
    """A valid spec that cannot run on a cluster as written (e.g. storage no pod can reach): one `Problem`, with the
    field's path and the fix, as the webhook and the jobs API report it."""

    def __init__(self, loc: Loc, message: str, hint: str = ""):
        self.problem = Problem(loc, message, hint=hint)
        super().__init__(str(self.problem))


@dataclass(frozen=True)
class AllowList:
    """What a job may name, as shell-style patterns (`fnmatch`, `*` matches any run of characters). A Secret or
    PersistentVolumeClaim pattern with a '/' is matched against `namespace/name`, one without against the name.

    Images: None allows the repositories of the operator's own images (its --image and --vllm-image), any tag or
    digest. Secrets: the conventional storage Secret name. Claims and priority classes: none.

    Storage endpoints are URLs, not patterns (`api.policy.same_endpoint`: same scheme, host and port): the storage
    Secret's credentials are sent there, and a glob over a URL string matches hosts its author never meant
    ('https://*.example.com' matches 'https://evil.test/.example.com'). None by default: a job without
    `storage.endpoint_url` uses the Secret's own AWS_ENDPOINT_URL, or AWS S3.

    Storage prefixes are where a job's `s3://` store may lie, segment by segment, `{namespace}` standing for the
    job's namespace (`api.policy.under_store_prefix`). The operator (reading checkpoints, deleting artifacts on
    `cleanup: delete`) and the jobs API (status, stored consoles) open a job's store with their own credentials, so
    without this rule a job in one namespace could name another team's prefix and have them read or deleted. By
    default a store's first segment below the bucket is the job's namespace: `s3://BUCKET/NAMESPACE/...`."""

    images: tuple[str, ...] | None = None
    secrets: tuple[str, ...] = DEFAULT_ALLOWED_SECRETS
    claims: tuple[str, ...] = ()
    priority_classes: tuple[str, ...] = ()
    storage_endpoints: tuple[str, ...] = ()
    storage_prefixes: tuple[str, ...] = DEFAULT_STORAGE_PREFIXES


@dataclass(frozen=True)
class RenderOptions:
    """Cluster-wide settings: the operator's flags, or `llmp render`'s."""

    image: str = DEFAULT_IMAGE
    vllm_image: str = DEFAULT_VLLM_IMAGE
    ray_version: str = DEFAULT_RAY_VERSION
    ttl_seconds_after_finished: int = DEFAULT_TTL_SECONDS
    namespace: str | None = None  # overrides metadata.namespace (e.g. `llmp render --namespace`)
    allow: AllowList = field(default_factory=AllowList)
    # what the trainer images provide (modules, as preflight names them): stages needing others are refused
    image_packages: tuple[str, ...] = DEFAULT_IMAGE_PACKAGES


# The environment the operator's and the jobs API's pods get from the chart (one source for both), comma-separated
# lists; a variable that is set, even to "", replaces the default, and a flag replaces the variable.
ENVIRONMENT = {
    "image": "LLMP_TRAINER_IMAGE",
    "vllm_image": "LLMP_VLLM_IMAGE",
    "images": "LLMP_ALLOW_IMAGES",
    "secrets": "LLMP_ALLOW_SECRETS",
    "claims": "LLMP_ALLOW_CLAIMS",
    "priority_classes": "LLMP_ALLOW_PRIORITY_CLASSES",
    "storage_endpoints": "LLMP_ALLOW_STORAGE_ENDPOINTS",
    "storage_prefixes": "LLMP_ALLOW_STORAGE_PREFIXES",
    "image_packages": "LLMP_IMAGE_PACKAGES",
}


def _listed(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def options_from_env(environ: Mapping[str, str] | None = None, **flags: str | tuple[str, ...] | None) -> RenderOptions:
    """RenderOptions from `flags` (keys of ENVIRONMENT; None = not given), else the environment, else the defaults.
    `image` and `vllm_image` are strings, the others tuples. A storage endpoint that is not an http(s) URL with a
    host, or a storage prefix that is not a well-formed s3:// prefix, is a ValueError naming where it came from (it
    could match nothing, and an allow-list that silently allows nothing looks configured)."""
    environ = os.environ if environ is None else environ

    def pick(key: str) -> str | tuple[str, ...] | None:
        if flags.get(key) is not None:
            return flags[key]
        raw = environ.get(ENVIRONMENT[key])
        if raw is None or key in ("image", "vllm_image"):
            return raw or None
        return _listed(raw)

    picked = {key: value for key in ENVIRONMENT if (value := pick(key)) is not None}
    checks = {
        "storage_endpoints": ("--allow-storage-endpoint", endpoint_entry_problem),
        "storage_prefixes": ("--allow-storage-prefix", store_prefix_entry_problem),
    }
    for key, (flag, entry_problem) in checks.items():
        for entry in picked.get(key, ()):
            if (problem := entry_problem(entry)) is not None:
                raise ValueError(f"{flag if flags.get(key) is not None else ENVIRONMENT[key]}: '{entry}' {problem}")
    lists = ("images", "secrets", "claims", "priority_classes", "storage_endpoints", "storage_prefixes")
    allow = AllowList(**{key: picked.pop(key) for key in lists if key in picked})
    return RenderOptions(allow=allow, **picked)


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
                ("metadata", "annotations", ELASTIC_ANNOTATION),
                f"expected 'MIN:MAX' nodes with 1 <= MIN <= MAX, got {raw!r}",
                hint="e.g. '2:4'",
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
