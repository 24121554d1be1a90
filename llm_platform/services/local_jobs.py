"""The embedded backend of the jobs API: each submitted LLMJob runs as `llmp run` in its own subprocess.

Jobs live under a root folder, one folder per job name holding `job.yaml`, the run's log and its artifact store, so
the API can restart and still report every job; the status of a job is read from the store's stage manifests.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import yaml

from llm_platform.api import LLMJob, load_job
from llm_platform.api.dag import topological_order
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.stages.preflight import check


class JobExists(RuntimeError):
    pass


class JobNotFound(KeyError):
    pass


class LocalJobs:
    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def submit(self, job: LLMJob) -> dict:
        """Start `llmp run` for the job; raises PreflightError first if a stage asks for what this server cannot do."""
        check(job.spec.stages)
        folder = self.root / job.metadata.name
        with self._lock:
            if (folder / "job.yaml").exists():
                raise JobExists(f"job '{job.metadata.name}' exists; delete it first or choose another name")
            folder.mkdir(parents=True)
            (folder / "job.yaml").write_text(yaml.safe_dump(job.to_dict(), sort_keys=False))
            log = open(folder / "run.log", "wb")  # noqa: SIM115 (owned by the child process)
            self._procs[job.metadata.name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "llm_platform.cli",
                    "run",
                    str(folder / "job.yaml"),
                    "--workdir",
                    str(folder / "artifacts"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
        return self.get(job.metadata.name)

    def names(self) -> list[str]:
        return sorted(p.parent.name for p in self.root.glob("*/job.yaml"))

    def get(self, name: str) -> dict:
        path = self.root / name / "job.yaml"
        if not path.is_file():
            raise JobNotFound(name)
        job = load_job(path)
        store = ArtifactStore.open(job.spec.storage.uri or str(self.root / name / "artifacts"))
        stages = {}
        for stage in topological_order(job.spec.stages):
            manifest = store.manifest(stage)
            stages[stage] = (
                {"phase": "Succeeded", "version": manifest.version, "metrics": manifest.meta.get("metrics", {})}
                if manifest
                else {"phase": "Pending"}
            )
        body = job.to_dict()
        body["status"] = {"phase": self._phase(name, stages), "stages": stages}
        if body["status"]["phase"] == "Failed":
            log = (self.root / name / "run.log").read_text(errors="replace").splitlines()
            body["status"]["message"] = "\n".join(log[-20:])
        return body

    def delete(self, name: str) -> None:
        if not (self.root / name / "job.yaml").is_file():
            raise JobNotFound(name)
        proc = self._procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        (self.root / name / "job.yaml").rename(self.root / name / "job.yaml.deleted")

    def _phase(self, name: str, stages: dict) -> str:
        proc = self._procs.get(name)
        if proc is not None and proc.poll() is None:
            return "Running"
        if all(s["phase"] == "Succeeded" for s in stages.values()):
            return "Succeeded"
        if proc is not None:
            return "Failed"
        return "Pending"
