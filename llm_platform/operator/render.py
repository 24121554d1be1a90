"""LLMJob -> Kubernetes manifests: which workload each stage becomes, and all of a job's objects in one list.

`render_job` is what `llmp render` prints (a dry run users can diff against the cluster); the operator creates the
same objects one stage at a time through `render_stage`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from llm_platform.api import LLMJob, Stage
from llm_platform.api.dag import topological_order
from llm_platform.api.errors import Problem

from .naming import owner_reference
from .options import RenderError, RenderOptions, job_options, namespace_of
from .pods import render_pod_service_account, render_spec_configmap, storage_uri
from .policy import policy_problems
from .render_batch import render_batch_job
from .render_context import RenderContext
from .render_pytorchjob import parallel_of, render_pytorchjob
from .render_rayjob import render_rayjob
from .render_serve import render_autoscaler, render_deployment, render_service

# kind -> (apiVersion, plural): every kind of object the operator creates.
WORKLOAD_KINDS: dict[str, tuple[str, str]] = {
    "PyTorchJob": ("kubeflow.org/v1", "pytorchjobs"),
    "RayJob": ("ray.io/v1", "rayjobs"),
    "Job": ("batch/v1", "jobs"),
    "Deployment": ("apps/v1", "deployments"),
}
COMPANION_KINDS: dict[str, tuple[str, str]] = {
    "Service": ("v1", "services"),
    "HorizontalPodAutoscaler": ("autoscaling/v2", "horizontalpodautoscalers"),
    "ConfigMap": ("v1", "configmaps"),
    "ServiceAccount": ("v1", "serviceaccounts"),
}


def workload_kind(stage: Stage) -> str:
    """The kind of workload a stage renders to."""
    if stage.kind == "serve":
        return "Deployment"
    if stage.trains:
        return "RayJob" if parallel_of(stage).launcher == "ray" else "PyTorchJob"
    uses_ray = stage.kind == "data" and stage.data.engine == "ray"
    return "RayJob" if uses_ray or stage.resources.workers > 1 else "Job"


@dataclass(frozen=True)
class StageManifests:
    """What one stage needs: its workload (whose state is the stage's state) and objects that go with it."""

    workload: dict[str, Any]
    companions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def all(self) -> list[dict[str, Any]]:
        return [*self.companions, self.workload]


def render_stage(
    job: LLMJob,
    stage_name: str,
    options: RenderOptions | None = None,
    *,
    attempt: int = 1,
    owner_uid: str | None = None,
) -> StageManifests:
    ctx = RenderContext.of(job, stage_name, options, attempt=attempt, owner_uid=owner_uid)
    kind = workload_kind(ctx.stage)
    if kind == "Deployment":
        extras = [render_service(ctx)]
        hpa = render_autoscaler(ctx)
        if hpa is not None:
            extras.append(hpa)
        return StageManifests(render_deployment(ctx), extras)
    render = {"PyTorchJob": render_pytorchjob, "RayJob": render_rayjob, "Job": render_batch_job}[kind]
    return StageManifests(render(ctx))


def _owned(obj: dict[str, Any], job: LLMJob, owner_uid: str | None) -> dict[str, Any]:
    if owner_uid:
        obj["metadata"]["ownerReferences"] = [owner_reference(job.metadata.name, owner_uid)]
    return obj


def render_configmap(job: LLMJob, options: RenderOptions | None = None, *, owner_uid: str | None = None) -> dict:
    """The ConfigMap holding the spec file every pod runs from."""
    options = options or RenderOptions()
    return _owned(render_spec_configmap(job, namespace_of(job, options)), job, owner_uid)


def render_service_account(
    job: LLMJob, options: RenderOptions | None = None, *, owner_uid: str | None = None
) -> dict[str, Any]:
    """The ServiceAccount every pod of the job runs as."""
    options = options or RenderOptions()
    return _owned(render_pod_service_account(job, namespace_of(job, options)), job, owner_uid)


def render_job(
    job: LLMJob, options: RenderOptions | None = None, *, stage: str | None = None, owner_uid: str | None = None
) -> list[dict[str, Any]]:
    """The spec ConfigMap and the pods' ServiceAccount, then every stage's objects in the order the stages run (or
    one stage's)."""
    options = options or RenderOptions()
    names = [stage] if stage is not None else topological_order(job.spec.stages)
    docs = [
        render_configmap(job, options, owner_uid=owner_uid),
        render_service_account(job, options, owner_uid=owner_uid),
    ]
    for name in names:
        docs += render_stage(job, name, options, owner_uid=owner_uid).all
    return docs


def render_problems(job: LLMJob, options: RenderOptions | None = None) -> list[Problem]:
    """Why the job cannot run on this cluster as written: every stage tried, every problem reported; what the
    operator's configuration does not allow (`policy`) included."""
    options = options or RenderOptions()
    problems: list[Problem] = []
    try:
        jopts = job_options(job)
        storage_uri(job, jopts)
    except RenderError as e:
        return [e.problem]
    for stage in job.spec.stages:
        try:
            render_stage(job, stage.name, options)
        except RenderError as e:
            problems.append(e.problem)
    return list(dict.fromkeys(problems + policy_problems(job, options)))


class _ManifestDumper(yaml.SafeDumper):
    """Plain YAML as people write manifests: no anchors, multi-line strings (the spec file) as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:  # noqa: ARG002  # yaml.SafeDumper.ignore_aliases(data)
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ManifestDumper.add_representer(str, _str)


def to_yaml(docs: list[dict[str, Any]]) -> str:
    return yaml.dump_all(docs, Dumper=_ManifestDumper, sort_keys=False, width=120)
