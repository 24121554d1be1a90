"""Pod pieces every rendered workload shares: the stage command, the spec file, storage credentials, resources.

Every pod runs what `llmp run` runs locally, `llmp stage run --job <spec> --stage <name> --storage <uri>`, with the
LLMJob spec mounted from a ConfigMap; only the launcher around it differs (torchrun, a Ray entrypoint, nothing).
"""

from __future__ import annotations

import copy
import shlex
from typing import Any

import yaml

from llm_platform.api import LLMJob, Stage

from .naming import (
    KUEUE_QUEUE_LABEL,
    SPEC_FILE,
    SPEC_FILE_DIR,
    STORAGE_CLAIM_ANNOTATION,
    labels,
    owner_reference,
    spec_configmap_name,
)
from .options import JobOptions, RenderError, RenderOptions

SPEC_VOLUME = "llmp-spec"
SHM_VOLUME = "dshm"
STORAGE_VOLUME = "llmp-storage"
GPU_RESOURCE = "nvidia.com/gpu"


def storage_uri(job: LLMJob, jopts: JobOptions) -> str:
    """The store every pod of the job reads and writes. On a cluster it must be shared by all pods."""
    uri = job.spec.storage.uri
    if not uri:
        raise RenderError(
            "spec.storage.uri: a cluster run needs storage every pod can reach; set s3://BUCKET/PREFIX "
            f"(or file:///PATH with the '{STORAGE_CLAIM_ANNOTATION}' annotation naming a shared PVC)"
        )
    if not uri.startswith("s3://") and not jopts.storage_claim:
        raise RenderError(
            f"spec.storage.uri: '{uri}' is a local path, which pods on different nodes do not share; use "
            f"s3://BUCKET/PREFIX, or set the '{STORAGE_CLAIM_ANNOTATION}' annotation to a ReadWriteMany PVC "
            "to mount there"
        )
    return uri


def _local_path(uri: str) -> str:
    return uri.removeprefix("file://")


def image_of(job: LLMJob, stage: Stage, options: RenderOptions) -> str:
    return stage.image or job.spec.image or options.image


def stage_args(job: LLMJob, stage: Stage, jopts: JobOptions) -> list[str]:
    return ["stage", "run", "--job", SPEC_FILE, "--stage", stage.name, "--storage", storage_uri(job, jopts)]


def llmp_command(job: LLMJob, stage: Stage, jopts: JobOptions) -> list[str]:
    return ["llmp", *stage_args(job, stage, jopts)]


def llmp_command_line(job: LLMJob, stage: Stage, jopts: JobOptions) -> str:
    """The same command as one shell-quoted string (a RayJob's `entrypoint`)."""
    return shlex.join(llmp_command(job, stage, jopts))


def spec_document(job: LLMJob) -> dict[str, Any]:
    """The LLMJob as pods read it: what the user wrote (unset defaults stay unset), without status or cluster fields."""
    spec = job.spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return {
        "apiVersion": job.api_version,
        "kind": job.kind,
        "metadata": {"name": job.metadata.name, "namespace": job.metadata.namespace},
        "spec": spec,
    }


def render_spec_configmap(job: LLMJob, options: RenderOptions, namespace: str) -> dict[str, Any]:
    text = yaml.safe_dump(spec_document(job), sort_keys=False, width=120)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": spec_configmap_name(job.metadata.name),
            "namespace": namespace,
            "labels": labels(job.metadata.name),
        },
        "data": {"job.yaml": text},
    }


def resource_requirements(cpu: str | None, memory: str | None, gpus: int) -> dict[str, Any]:
    """Requests and limits: CPU is requested (not capped, so pods can burst), memory and GPUs are both."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if cpu:
        requests["cpu"] = cpu
    if memory:
        requests["memory"] = limits["memory"] = memory
    if gpus:
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(gpus)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def storage_env(job: LLMJob) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(env, envFrom): the S3 endpoint as AWS_ENDPOINT_URL, credentials from the Secret named in spec.storage."""
    env: list[dict[str, Any]] = [{"name": "PYTHONUNBUFFERED", "value": "1"}]
    if job.spec.storage.endpoint_url:
        env.append({"name": "AWS_ENDPOINT_URL", "value": job.spec.storage.endpoint_url})
    env_from = [{"secretRef": {"name": job.spec.storage.secret_ref}}] if job.spec.storage.secret_ref else []
    return env, env_from


def volumes(job: LLMJob, jopts: JobOptions, shm: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, volumeMounts): the spec file, optional shared memory (NCCL, data loader workers, Ray's object
    store all need more than the container runtime's 64 MiB default) and the shared storage claim if any."""
    vols: list[dict[str, Any]] = [
        {"name": SPEC_VOLUME, "configMap": {"name": spec_configmap_name(job.metadata.name)}},
    ]
    mounts: list[dict[str, Any]] = [{"name": SPEC_VOLUME, "mountPath": SPEC_FILE_DIR, "readOnly": True}]
    if shm:
        vols.append({"name": SHM_VOLUME, "emptyDir": {"medium": "Memory"}})
        mounts.append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})
    if jopts.storage_claim and job.spec.storage.uri and not job.spec.storage.uri.startswith("s3://"):
        vols.append({"name": STORAGE_VOLUME, "persistentVolumeClaim": {"claimName": jopts.storage_claim}})
        mounts.append({"name": STORAGE_VOLUME, "mountPath": _local_path(job.spec.storage.uri)})
    return vols, mounts


def container(
    name: str,
    image: str,
    job: LLMJob,
    jopts: JobOptions,
    resources: dict[str, Any],
    mounts: list[dict[str, Any]],
    command: list[str] | None = None,
    args: list[str] | None = None,
    ports: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    env, env_from = storage_env(job)
    out: dict[str, Any] = {"name": name, "image": image}
    if command is not None:
        out["command"] = command
    if args is not None:
        out["args"] = args
    out["env"] = env
    if env_from:
        out["envFrom"] = env_from
    if ports:
        out["ports"] = ports
    if resources:
        out["resources"] = resources
    out["volumeMounts"] = mounts
    return out


def pod_spec(
    stage: Stage,
    jopts: JobOptions,
    containers: list[dict[str, Any]],
    vols: list[dict[str, Any]],
    restart_policy: str | None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    spec["containers"] = containers
    spec["volumes"] = vols
    if stage.resources.node_selector:
        spec["nodeSelector"] = dict(stage.resources.node_selector)
    if jopts.priority_class:
        spec["priorityClassName"] = jopts.priority_class
    return spec


def pod_template(job_name: str, stage: Stage, attempt: int, spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"labels": labels(job_name, stage.name, attempt)}, "spec": copy.deepcopy(spec)}


def child_metadata(
    job: LLMJob,
    stage: Stage,
    namespace: str,
    attempt: int,
    jopts: JobOptions,
    owner_uid: str | None,
    name: str,
) -> dict[str, Any]:
    """Metadata of a stage's child: deterministic name, job/stage/attempt labels, the Kueue queue label, and the
    LLMJob as controlling owner (omitted in dry runs, where the job has no uid yet)."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": labels(job.metadata.name, stage.name, attempt),
    }
    if jopts.kueue_queue:
        meta["labels"][KUEUE_QUEUE_LABEL] = jopts.kueue_queue
    if owner_uid:
        meta["ownerReferences"] = [owner_reference(job.metadata.name, owner_uid)]
    return meta


def starts_suspended(job: LLMJob, jopts: JobOptions) -> bool:
    """Children start suspended while the job is, and always under Kueue (which admits them by unsuspending)."""
    return job.spec.suspend or jopts.kueue_queue is not None
