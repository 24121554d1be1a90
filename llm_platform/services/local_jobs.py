"""The embedded backend of the jobs API: each submitted LLMJob runs as `llmp run` in its own process group.

Everything lives under one root: `jobs.sqlite` (what was submitted and where each job is, see `job_state`) and one
folder per job, `<root>/<namespace>/<name>/`, holding `job.yaml`, the run's log and (unless the spec names a store)
its artifacts. Folder names come only from validated DNS-1123 names and are checked to resolve inside the root.

At most `max_running` jobs run at once; up to `max_queued` more wait, first come first served, and a submission past
that is refused (QueueFull, a 429) instead of starting more processes than the machine can hold. A dispatcher thread
starts queued jobs as slots free up and notices jobs that ended, including those started before a restart (their
identity is checked in /proc, see `processes`).

Stage status comes from the artifact store's manifests (committed = Succeeded), from the running process group
(`llmp stage run --stage X` = Running) and from the exit code. The store is read on a small thread pool with a time
limit, so one job whose store does not answer makes its own status say so and never holds up the others.
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import yaml

from llm_platform.api import API_VERSION, KIND, LLMJob, parse_job_text
from llm_platform.api.dag import topological_order
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.stages.preflight import check

from .backend import JobExists, JobNotFound, QueueFull
from .job_state import JobRow, JobTable
from .processes import identify, is_alive, running_stages, stop_group

log = logging.getLogger(__name__)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LOG_TAIL_LINES = 12
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b:?")


class LocalJobs:
    def __init__(
        self,
        root: Path,
        max_running: int = 2,
        max_queued: int = 16,
        status_timeout_s: float = 5.0,
        poll_s: float = 0.5,
    ):
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_running, self.max_queued = max_running, max_queued
        self.status_timeout_s, self.poll_s = status_timeout_s, poll_s
        self.table = JobTable(self.root / "jobs.sqlite")
        self._children: dict[tuple[str, str, int], subprocess.Popen] = {}
        self._lock = threading.Lock()  # one of submit / start / reap / delete at a time
        self._specs: dict[tuple[str, str, int], LLMJob] = {}
        self._reads = ThreadPoolExecutor(4, thread_name_prefix="llmp-store-read")
        self._pending_reads: dict[tuple[str, str, int], Future] = {}
        self._wake, self._closing = threading.Event(), threading.Event()
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="llmp-dispatch", daemon=True)
        self._dispatcher.start()

    def close(self) -> None:
        """Stop dispatching; running jobs keep running (a restarted server adopts them)."""
        self._closing.set()
        self._wake.set()
        self._dispatcher.join()
        self._reads.shutdown(wait=False, cancel_futures=True)
        self.table.close()

    # -- the backend interface ---------------------------------------------------------------------------------------
    def serves(self, namespace: str) -> str | None:  # noqa: ARG002  # Jobs.serves(namespace): one server serves every namespace
        return None

    def submit(self, namespace: str, job: LLMJob) -> dict[str, Any]:
        """Queue the job (and start it if a slot is free); PreflightError first if this server cannot run a stage."""
        check(job, [stage.name for stage in job.spec.stages])
        body = job.to_dict()
        body["metadata"]["namespace"] = namespace
        self.folder(namespace, job.metadata.name)  # refuses a name that would leave the root, before anything is kept
        with self._lock:
            active = self.table.count("queued") + self.table.count("running")
            if active >= self.max_running + self.max_queued:
                raise QueueFull(
                    f"{active} jobs are running or queued, the most this server takes "
                    f"({self.max_running} running + {self.max_queued} queued); retry when one has finished"
                )
            if not self.table.insert(namespace, job.metadata.name, yaml.safe_dump(body, sort_keys=False)):
                raise JobExists(f"job '{job.metadata.name}' exists; delete it first or choose another name")
            self._start_queued()
        return self.get(namespace, job.metadata.name)

    def list(self, namespace: str) -> list[dict[str, Any]]:
        return [self._reported(row) for row in self.table.in_namespace(namespace)]

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        row = self.table.get(namespace, name)
        if row is None:
            raise JobNotFound(name)
        return self._reported(row)

    def delete(self, namespace: str, name: str) -> None:
        """Stop the job's processes (only if /proc shows they are still the ones it started) and forget it, so the
        name can be submitted again. Its artifacts stay, as a cluster's do in object storage."""
        with self._lock:
            row = self.table.get(namespace, name)
            if row is None:
                raise JobNotFound(name)
            if row.state == "running" and row.process is not None:
                stop_group(row.process)
            child = self._children.pop(_key(row), None)
            if child is not None:
                child.poll()
            self.table.delete(namespace, name)
            self._specs.pop(_key(row), None)
        self._wake.set()

    # -- where a job lives -------------------------------------------------------------------------------------------
    def folder(self, namespace: str, name: str) -> Path:
        """`<root>/<namespace>/<name>`; JobNotFound for a name that is not a DNS-1123 label or would leave the root."""
        if not (DNS_LABEL.match(namespace) and DNS_LABEL.match(name)):
            raise JobNotFound(name)
        folder = (self.root / namespace / name).resolve()
        if not folder.is_relative_to(self.root) or folder == self.root:
            raise JobNotFound(name)
        return folder

    def _storage(self, row: JobRow, job: LLMJob) -> str:
        return job.spec.storage.uri or f"file://{self.folder(row.namespace, row.name) / 'artifacts'}"

    # -- dispatching -------------------------------------------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        while not self._closing.is_set():
            with self._lock:
                self._reap()
                self._start_queued()
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _reap(self) -> None:
        """Mark ended the running jobs whose process is gone: our children with their exit code, jobs adopted after a
        restart without one."""
        for row in self.table.in_state("running"):
            child = self._children.get(_key(row))
            if child is not None:
                code = child.poll()
                if code is not None:
                    self._children.pop(_key(row))
                    self.table.ended(row, code)
            elif row.process is None or not is_alive(row.process):
                self.table.ended(row, None)

    def _start_queued(self) -> None:
        free = self.max_running - self.table.count("running")
        for row in self.table.in_state("queued")[: max(free, 0)]:
            self._start(row)

    def _start(self, row: JobRow) -> None:
        folder = self.folder(row.namespace, row.name)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "job.yaml").write_text(row.spec)
        with open(folder / "run.log", "wb") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "llm_platform.cli", "run", str(folder / "job.yaml")]
                + ["--workdir", str(folder / "artifacts")],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "COLUMNS": "160"},  # a log that wraps less reads better in status.message
                start_new_session=True,  # its own process group: DELETE stops the job and every stage it started
            )
        self._children[_key(row)] = child
        process = identify(child.pid)
        if process is None:  # cannot happen for an unreaped child; keep the exit code if it does
            self.table.ended(row, child.wait())
            return
        self.table.started(row, process)

    # -- status ------------------------------------------------------------------------------------------------------
    def _reported(self, row: JobRow) -> dict[str, Any]:
        """The job with its status; for a job that cannot be reported (say, a stored spec that a newer version no
        longer accepts), what the table knows and why, so one such job never breaks a listing."""
        try:
            return self._body(row)
        except Exception as e:
            log.exception("cannot report job %s/%s", row.namespace, row.name)
            phase = {"queued": "Pending", "running": "Running"}.get(
                row.state, "Succeeded" if row.exit_code == 0 else "Failed"
            )
            return {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {"name": row.name, "namespace": row.namespace},
                "status": {"phase": phase, "message": f"cannot report this job's status: {type(e).__name__}: {e}"},
            }

    def _body(self, row: JobRow) -> dict[str, Any]:
        """The job as submitted plus its status; never raises for a job whose store cannot be read."""
        job = self._job(row)
        try:
            committed, store_error = self._committed(row, job), None
        except Exception as e:  # the store is the job's own: its failure is this job's status, not the listing's
            committed, store_error = {}, f"cannot read the artifact store: {type(e).__name__}: {e}"
        ahead = sum(1 for r in self.table.in_state("queued") if r.seq < row.seq) if row.state == "queued" else 0
        status = job_status(
            row.state,
            row.exit_code,
            [(name, job.spec.stage(name).needs) for name in topological_order(job.spec.stages)],
            committed,
            running_stages(row.process) if row.state == "running" and row.process else set(),
            ahead,
        )
        if status["phase"] == "Failed":
            status["message"] = self._log_tail(row)
        if store_error:
            status["message"] = "\n".join(filter(None, [store_error, status.get("message")]))
        return {**job.to_dict(), "status": status}

    def _job(self, row: JobRow) -> LLMJob:
        key = _key(row)
        if key not in self._specs:
            self._specs[key] = parse_job_text(row.spec)
        return self._specs[key]

    def _committed(self, row: JobRow, job: LLMJob) -> dict[str, dict]:
        """{stage: version and metrics} of the committed stages, read on the pool; a read still running from an
        earlier request is waited on again rather than started twice, so a dead store ties up one thread, not many."""
        key = _key(row)
        with self._lock:
            future = self._pending_reads.get(key)
            if future is None:
                uri, endpoint = self._storage(row, job), job.spec.storage.endpoint_url
                future = self._reads.submit(_read_manifests, uri, endpoint, topological_order(job.spec.stages))
                self._pending_reads[key] = future
        try:
            return future.result(timeout=self.status_timeout_s)
        except FutureTimeout:
            raise TimeoutError(f"no answer within {self.status_timeout_s:g} s") from None
        finally:
            if future.done():
                with self._lock:
                    if self._pending_reads.get(key) is future:
                        del self._pending_reads[key]

    def _log_tail(self, row: JobRow) -> str:
        try:
            return failure_message((self.folder(row.namespace, row.name) / "run.log").read_text(errors="replace"))
        except OSError:
            return "the run ended without a log"


def job_status(
    state: str,
    exit_code: int | None,
    stages: list[tuple[str, list[str]]],
    committed: dict[str, dict],
    running: set[str],
    queued_ahead: int = 0,
) -> dict[str, Any]:
    """A job's status from what the backend knows: its state (queued, running, ended) and exit code, its stages in
    order with their needs, the committed ones (version, metrics) and those whose process runs now. Pure.

    A run that ended with exit code 0 Succeeded; one whose exit code is unknown (it ended while the server was down)
    Succeeded if every stage is committed. In a failed run, the stages whose inputs were all committed are where it
    stopped (Failed), and those downstream never ran (Skipped)."""
    if state == "queued":
        status: dict[str, Any] = {"phase": "Pending", "message": f"queued: {queued_ahead} job(s) ahead"}
    elif state == "running":
        status = {"phase": "Running"}
    else:
        ok = exit_code == 0 or (exit_code is None and len(committed) == len(stages))
        status = {"phase": "Succeeded" if ok else "Failed"}
    failed = status["phase"] == "Failed"
    phases = {}
    for name, needs in stages:
        if name in running:
            phases[name] = {"phase": "Running"}
        elif name in committed:
            phases[name] = {"phase": "Succeeded", **committed[name]}
        elif failed and all(n in committed for n in needs):
            phases[name] = {"phase": "Failed", "message": "the run stopped here; status.message has its log"}
        elif failed:
            phases[name] = {"phase": "Skipped", "message": "not run: a stage it needs did not succeed"}
        else:
            phases[name] = {"phase": "Pending"}
    status["stages"] = phases
    return status


def failure_message(log: str) -> str:
    """What a failed run's log says went wrong: the last exception (`SomeError: ...`, to the next blank or rule line)
    and then the log's last lines (the run's summary table). Pure."""
    lines = log.splitlines()
    error = next((i for i in range(len(lines) - 1, -1, -1) if EXCEPTION_LINE.match(lines[i])), None)
    cause = []
    if error is not None:
        for line in lines[error:]:
            if not line.strip() or line.startswith(("✗", "─", "┏", "┌")):
                break
            cause.append(line)
    return "\n".join([*cause, *lines[-LOG_TAIL_LINES:]])


def _read_manifests(uri: str, endpoint_url: str | None, stages: list[str]) -> dict[str, dict]:
    store = ArtifactStore.open(uri, endpoint_url)
    committed = {}
    for stage in stages:
        manifest = store.manifest(stage)
        if manifest is not None:
            committed[stage] = {"version": manifest.version, "metrics": json_safe(manifest.meta.get("metrics", {}))}
    return committed


def json_safe(value: Any) -> Any:
    """Metrics as strict JSON can carry them: a NaN or infinite loss becomes the string "nan"/"inf" (a diverged run
    must still be listed, and strict JSON has no NaN). Pure."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _key(row: JobRow) -> tuple[str, str, int]:
    return row.namespace, row.name, row.seq
