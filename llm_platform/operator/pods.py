"""Pod pieces every rendered workload shares: the stage command, the spec file, storage credentials, resources, and
the hardening every pod gets.

Every pod runs what `llmp run` runs locally, `llmp stage run --job <spec> --stage <name> --storage <uri>`, with the
LLMJob spec mounted from a ConfigMap; only the launcher around it differs (torchrun, a Ray entrypoint, nothing).

Every pod meets the Pod Security Standards' "restricted" profile: it runs as POD_USER (the trainer image's `llmp`
user; the vLLM image runs as it too), with the RuntimeDefault seccomp profile, no privilege escalation and no
capabilities, on a read-only root file system with writable emptyDirs for /tmp and $HOME (where Hugging Face, torch,
Triton, Ray and vLLM keep their caches). It runs as the job's own ServiceAccount without an API token: no stage talks
to the Kubernetes API (the operator does that for them). Every container has CPU and memory requests and limits; the
storage Secret reaches only containers that read or write the artifact store.

One thing outside our manifests: for a multi-node PyTorchJob the training operator adds its own init container to the
Worker pods (waiting for the Master's DNS name); in a namespace that enforces "restricted", configure its template
(the training operator's --init-container-template-file) with the same container securityContext.
"""

from __future__ import annotations

import copy
import shlex
from typing import Any

import yaml

from llm_platform.api import LLMJob
from llm_platform.trainer.stages.command import stage_run_args

from .naming import (
    KUEUE_QUEUE_LABEL,
    SPEC_FILE,
    SPEC_FILE_DIR,
    STORAGE_CLAIM_ANNOTATION,
    labels,
    owner_reference,
    service_account_name,
    spec_configmap_name,
)
from .options import JobOptions, RenderError
from .render_context import RenderContext

SPEC_VOLUME = "llmp-spec"
SHM_VOLUME = "dshm"
STORAGE_VOLUME = "llmp-storage"
TMP_VOLUME = "tmp"
HOME_VOLUME = "home"
GPU_RESOURCE = "nvidia.com/gpu"

POD_USER = 1000  # `useradd --uid 1000 llmp` in images/trainer/Dockerfile
USER_NAME = "llmp"
HOME_DIR = "/home/llmp"
# A stage that names no CPU or memory gets these (requests = limits: a training pod should not be throttled or
# evicted for what it was promised).
DEFAULT_CPU = "2"
DEFAULT_MEMORY = "8Gi"


def storage_uri(job: LLMJob, jopts: JobOptions) -> str:
    """The store every pod of the job reads and writes. On a cluster it must be shared by all pods."""
    uri = job.spec.storage.uri
    if not uri:
        raise RenderError(
            ("spec", "storage", "uri"),
            "a cluster run needs storage every pod can reach",
            hint=f"set s3://BUCKET/PREFIX (or file:///PATH with the '{STORAGE_CLAIM_ANNOTATION}' annotation naming "
            "a shared PVC)",
        )
    if not uri.startswith("s3://") and not jopts.storage_claim:
        raise RenderError(
            ("spec", "storage", "uri"),
            f"'{uri}' is a local path, which pods on different nodes do not share",
            hint=f"use s3://BUCKET/PREFIX, or set the '{STORAGE_CLAIM_ANNOTATION}' annotation to a ReadWriteMany "
            "PVC to mount there",
        )
    return uri


def _local_path(uri: str) -> str:
    return uri.removeprefix("file://")


def stage_args(ctx: RenderContext) -> list[str]:
    return stage_run_args(SPEC_FILE, ctx.stage.name, storage_uri(ctx.job, ctx.jopts))


def llmp_command(ctx: RenderContext) -> list[str]:
    return ["llmp", *stage_args(ctx)]


def llmp_command_line(ctx: RenderContext) -> str:
    """The same command as one shell-quoted string (a RayJob's `entrypoint`)."""
    return shlex.join(llmp_command(ctx))


def spec_document(job: LLMJob) -> dict[str, Any]:
    """The LLMJob as pods read it: what the user wrote (unset defaults stay unset), without status or cluster fields."""
    spec = job.spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return {
        "apiVersion": job.api_version,
        "kind": job.kind,
        "metadata": {"name": job.metadata.name, "namespace": job.metadata.namespace},
        "spec": spec,
    }


def _job_labelled(job: LLMJob, kind: str, name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "labels": labels(job.metadata.name)},
    }


def render_spec_configmap(job: LLMJob, namespace: str) -> dict[str, Any]:
    text = yaml.safe_dump(spec_document(job), sort_keys=False, width=120)
    return {
        **_job_labelled(job, "ConfigMap", spec_configmap_name(job.metadata.name), namespace),
        "data": {"job.yaml": text},
    }


def render_pod_service_account(job: LLMJob, namespace: str) -> dict[str, Any]:
    """The identity every pod of the job runs as: bound to no Role, and without a token mounted by default, so a
    pod can do nothing with the Kubernetes API (and a pod of one job is told apart from another's in audit logs)."""
    sa = _job_labelled(job, "ServiceAccount", service_account_name(namespace, job.metadata.name), namespace)
    return {**sa, "automountServiceAccountToken": False}


def resource_requirements(cpu: str | None, memory: str | None, gpus: int) -> dict[str, Any]:
    """Requests and limits of CPU, memory (the defaults when the stage names none) and GPUs, each limit equal to its
    request."""
    wanted = {"cpu": cpu or DEFAULT_CPU, "memory": memory or DEFAULT_MEMORY}
    if gpus:
        wanted[GPU_RESOURCE] = str(gpus)
    return {"requests": dict(wanted), "limits": dict(wanted)}


def container_env(job: LLMJob, storage: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(env, envFrom): $HOME on its writable volume and $USER (in an image without a passwd entry for POD_USER,
    such as vLLM's, `getpass.getuser()` fails without it, and torch's compile cache asks it); for a container that
    uses the artifact store (`storage`), the S3 endpoint as AWS_ENDPOINT_URL and the credentials from the Secret
    named in spec.storage. No other container gets them (the vLLM server reads a model an init container fetched)."""
    env: list[dict[str, Any]] = [
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "HOME", "value": HOME_DIR},
        {"name": "USER", "value": USER_NAME},
    ]
    if not storage:
        return env, []
    if job.spec.storage.endpoint_url:
        env.append({"name": "AWS_ENDPOINT_URL", "value": job.spec.storage.endpoint_url})
    env_from = [{"secretRef": {"name": job.spec.storage.secret_ref}}] if job.spec.storage.secret_ref else []
    return env, env_from


def scratch_volumes() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, volumeMounts) of the writable places on a read-only root: /tmp and $HOME."""
    vols = [{"name": TMP_VOLUME, "emptyDir": {}}, {"name": HOME_VOLUME, "emptyDir": {}}]
    mounts = [{"name": TMP_VOLUME, "mountPath": "/tmp"}, {"name": HOME_VOLUME, "mountPath": HOME_DIR}]
    return vols, mounts


def volumes(ctx: RenderContext, shm: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, volumeMounts): the spec file, /tmp and $HOME (the root file system is read-only), optional shared
    memory (NCCL, data loader workers, Ray's object store all need more than the container runtime's 64 MiB
    default) and the shared storage claim if any."""
    job, jopts = ctx.job, ctx.jopts
    scratch, scratch_mounts = scratch_volumes()
    vols = [{"name": SPEC_VOLUME, "configMap": {"name": spec_configmap_name(job.metadata.name)}}, *scratch]
    mounts = [{"name": SPEC_VOLUME, "mountPath": SPEC_FILE_DIR, "readOnly": True}, *scratch_mounts]
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
    resources: dict[str, Any],
    mounts: list[dict[str, Any]],
    command: list[str] | None = None,
    args: list[str] | None = None,
    ports: list[dict[str, Any]] | None = None,
    storage: bool = True,
) -> dict[str, Any]:
    """A hardened container; `storage`: it reads or writes the artifact store, and so gets its credentials."""
    env, env_from = container_env(job, storage)
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
    out["resources"] = resources
    out["securityContext"] = container_security_context()
    out["volumeMounts"] = mounts
    return out


def container_security_context() -> dict[str, Any]:
    """What "restricted" asks of each container (no privilege escalation, every capability dropped), and a
    read-only root file system: code in the image cannot be changed by what a stage runs."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def pod_security_context() -> dict[str, Any]:
    """Every container (those KubeRay or the training operator add too) runs as POD_USER under RuntimeDefault
    seccomp; volumes are group-owned by it, so a storage claim is writable (changed only where it is not yet)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": POD_USER,
        "runAsGroup": POD_USER,
        "fsGroup": POD_USER,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_spec(
    ctx: RenderContext, containers: list[dict[str, Any]], vols: list[dict[str, Any]], restart_policy: str | None
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    spec["serviceAccountName"] = service_account_name(ctx.namespace, ctx.job.metadata.name)
    spec["automountServiceAccountToken"] = False
    spec["securityContext"] = pod_security_context()
    spec["containers"] = containers
    spec["volumes"] = vols
    if ctx.stage.resources.node_selector:
        spec["nodeSelector"] = dict(ctx.stage.resources.node_selector)
    if ctx.jopts.priority_class:
        spec["priorityClassName"] = ctx.jopts.priority_class
    return spec


def pod_template(ctx: RenderContext, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels(ctx.job.metadata.name, ctx.stage.name, ctx.attempt)},
        "spec": copy.deepcopy(spec),
    }


def child_metadata(ctx: RenderContext) -> dict[str, Any]:
    """Metadata of a stage's child: deterministic name, job/stage/attempt labels, the Kueue queue label, and the
    LLMJob as controlling owner (omitted in dry runs, where the job has no uid yet)."""
    meta: dict[str, Any] = {
        "name": ctx.child_name,
        "namespace": ctx.namespace,
        "labels": labels(ctx.job.metadata.name, ctx.stage.name, ctx.attempt),
    }
    if ctx.jopts.kueue_queue:
        meta["labels"][KUEUE_QUEUE_LABEL] = ctx.jopts.kueue_queue
    if ctx.owner_uid:
        meta["ownerReferences"] = [owner_reference(ctx.job.metadata.name, ctx.owner_uid)]
    return meta


def starts_suspended(ctx: RenderContext) -> bool:
    """Children start suspended while the job is, and always under Kueue (which admits them by unsuspending)."""
    return ctx.job.spec.suspend or ctx.jopts.kueue_queue is not None
