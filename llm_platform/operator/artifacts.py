"""What the artifact store says about a job's stages: the latest complete checkpoint of a training stage and the
committed version of a finished one. Recorded in status so that `kubectl get llmjob -o yaml` shows where a retry
resumes from.

Optional by design: the operator needs no storage credentials to run stages (pods get them from the job's Secret).
When it has none, or the store cannot be read, the probe answers nothing and stops trying that store for a while.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path

from llm_platform.api import LLMJob

from .options import AllowList
from .plan import StageArtifacts
from .policy import storage_problems

log = logging.getLogger(__name__)


def latest_checkpoint(store, job: LLMJob, stage_name: str) -> tuple[str, int] | None:
    """(URI, step) of the checkpoint a re-run of the stage would resume from, or None.

    Checkpoints live under `<stage>/checkpoints/<fingerprint>/`, where the fingerprint hashes the stage's settings
    and inputs; its `latest` pointer is written last, after every node's shard is committed."""
    from llm_platform.trainer.stages import make_context

    with tempfile.TemporaryDirectory() as tmp:
        fingerprint = make_context(job, stage_name, store, Path(tmp)).fingerprint()
    key = f"{stage_name}/checkpoints/{fingerprint}"
    pointer = store.read_json(f"{key}/latest")
    if not pointer or "step" not in pointer:
        return None
    step = int(pointer["step"])
    return f"{store.uri.rstrip('/')}/{key}/step_{step:08d}", step


def job_store(job: LLMJob, allow: AllowList, s3_config=None):
    """The job's store as the operator opens it: `spec.storage.uri` at `spec.storage.endpoint_url`, with this
    process's own credentials (its environment, or the Secret folder LLMP_S3_SECRET_DIR names). PermissionError,
    naming the field, when the endpoint or the prefix is not on the allow-list: those credentials go to no other
    endpoint and open no other namespace's prefix."""
    from llm_platform.storage import ArtifactStore

    if refused := storage_problems(job, allow, job.metadata.namespace):
        raise PermissionError(str(refused[0]))
    return ArtifactStore.open(job.spec.storage.uri, job.spec.storage.endpoint_url, s3_config)


class ArtifactProbe:
    def __init__(self, enabled: bool = True, backoff_s: float = 300.0):
        self.enabled = enabled
        self.backoff_s = backoff_s
        self._failed_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def probe(self, job: LLMJob, checkpoints_of: list[str], versions_of: list[str]) -> dict[str, StageArtifacts]:
        uri = job.spec.storage.uri
        if not self.enabled or not uri or not (checkpoints_of or versions_of) or self._backing_off(uri):
            return {}
        from llm_platform.storage import ArtifactStore

        found: dict[str, StageArtifacts] = {}
        try:
            store = ArtifactStore.open(uri, job.spec.storage.endpoint_url)
            for name in dict.fromkeys([*checkpoints_of, *versions_of]):
                checkpoint = latest_checkpoint(store, job, name) if name in checkpoints_of else None
                manifest = store.manifest(name) if name in versions_of else None
                found[name] = StageArtifacts(
                    checkpoint=checkpoint[0] if checkpoint else None,
                    step=checkpoint[1] if checkpoint else None,
                    version=manifest.version if manifest else None,
                )
        except Exception as e:  # any storage failure only means "unknown"; stages run regardless
            log.info(
                "cannot read artifacts of %s at %s (%s); not trying again for %.0f s",
                job.metadata.name,
                uri,
                e,
                self.backoff_s,
            )
            with self._lock:
                self._failed_at[uri] = time.monotonic()
        return found

    def delete_stage_artifacts(self, job: LLMJob) -> None:
        """Remove everything the job's stages stored (spec.cleanup: delete). Only the job's own stage prefixes: two
        jobs may share a storage URI."""
        from llm_platform.storage import ArtifactStore

        store = ArtifactStore.open(job.spec.storage.uri, job.spec.storage.endpoint_url)
        for stage in job.spec.stages:
            store.backend.delete_prefix(stage.name)

    def _backing_off(self, uri: str) -> bool:
        with self._lock:
            failed = self._failed_at.get(uri)
            return failed is not None and time.monotonic() - failed < self.backoff_s
