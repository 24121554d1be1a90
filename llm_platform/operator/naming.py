"""Names, labels and annotations the operator puts on (and reads from) Kubernetes objects.

Child names are deterministic (`<job>-<stage>-<hash>`), so an operator restarted at any point finds what it created
before instead of creating it again; the attempt number travels as a label, not in the name. The hash keeps names of
different jobs apart where `<job>-<stage>` alone would not (job `team` stage `x-data` and job `team-x` stage `data`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from llm_platform.api import KIND
from llm_platform.api.crd import GROUP, PLURAL, VERSION

LLMJOB_API_VERSION = f"{GROUP}/{VERSION}"
LLMJOB_PLURAL = PLURAL

JOB_LABEL = f"{GROUP}/job"
STAGE_LABEL = f"{GROUP}/stage"
ATTEMPT_LABEL = f"{GROUP}/attempt"
MANAGED_BY = "llm-platform-operator"

# Annotations users set on an LLMJob (until the spec grows fields for them).
SCHEDULING_QUEUE_ANNOTATION = f"{GROUP}/scheduling-queue"  # Volcano / scheduler-plugins queue for gang scheduling
PRIORITY_CLASS_ANNOTATION = f"{GROUP}/priority-class"  # PriorityClass for every pod (and gang scheduling)
ELASTIC_ANNOTATION = f"{GROUP}/elastic-nodes"  # "MIN:MAX" nodes: torchrun elastic training for PyTorchJobs
STORAGE_CLAIM_ANNOTATION = f"{GROUP}/storage-claim"  # PVC mounted at a file:// storage path in every pod
RERUN_ANNOTATION = f"{GROUP}/rerun"  # "stage[,stage...]": run these finished stages (and what needs them) again

# Kueue's own label: on an LLMJob it names the LocalQueue; children carry it and are created suspended, for Kueue
# to admit (unsuspend) them.
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# Set on a serving Deployment while the job is suspended (it is scaled to zero; Deployments have no `suspend`).
SUSPENDED_ANNOTATION = f"{GROUP}/suspended"

SPEC_FILE_DIR = "/etc/llmp"
SPEC_FILE = f"{SPEC_FILE_DIR}/job.yaml"


# A child's name is at most this long: the training operator names pods `<name>-worker-<index>` without shortening,
# and a pod name is a 63-character DNS label (47 + len("-worker-4095") = 59).
CHILD_NAME_LIMIT = 47
HASH_LENGTH = 6


def name_hash(*parts: str) -> str:
    """A short, stable digest of `parts` joined by '/', a character no Kubernetes name contains (so ('a-b', 'c') and
    ('a', 'b-c') differ)."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:HASH_LENGTH]


def _hashed(readable: str, digest: str) -> str:
    return f"{readable[: CHILD_NAME_LIMIT - len(digest) - 1].rstrip('-')}-{digest}"


def child_name(namespace: str, job_name: str, stage_name: str) -> str:
    """The name of a stage's workload (and of its Service for `serve`): `<job>-<stage>` (shortened past 40
    characters) and a hash of namespace/job/stage; at most CHILD_NAME_LIMIT characters."""
    return _hashed(f"{job_name}-{stage_name}", name_hash(namespace, job_name, stage_name))


def service_account_name(namespace: str, job_name: str) -> str:
    """The job's own ServiceAccount, which every pod of the job runs as (and nothing else does)."""
    return _hashed(f"{job_name}-pods", name_hash(namespace, job_name))


def spec_configmap_name(job_name: str) -> str:
    return f"{job_name}-spec"


def labels(job_name: str, stage_name: str | None = None, attempt: int | None = None) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": "llm-platform",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/instance": job_name,
        JOB_LABEL: job_name,
    }
    if stage_name is not None:
        out[STAGE_LABEL] = stage_name
        out["app.kubernetes.io/component"] = stage_name
    if attempt is not None:
        out[ATTEMPT_LABEL] = str(attempt)
    return out


def selector_labels(job_name: str, stage_name: str) -> dict[str, str]:
    """The labels a Service selects its pods by: stable across attempts and spec changes."""
    return {JOB_LABEL: job_name, STAGE_LABEL: stage_name}


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    """Makes the LLMJob the controller of a child, so Kubernetes garbage-collects children with their job."""
    return {
        "apiVersion": LLMJOB_API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def attempt_of(obj: dict[str, Any]) -> int:
    """The attempt number a child was created for (1 if the label is missing or garbled)."""
    value = ((obj.get("metadata") or {}).get("labels") or {}).get(ATTEMPT_LABEL, "1")
    return int(value) if str(value).isdigit() else 1


def rerun_requests(annotations: dict[str, str]) -> list[str]:
    """Stage names listed in the rerun annotation, in order, without blanks or repeats."""
    raw = annotations.get(RERUN_ANNOTATION, "")
    return list(dict.fromkeys(s.strip() for s in raw.split(",") if s.strip()))
