"""The embedded backend of the jobs API: each submitted LLMJob runs as `llmp run` in its own process group.

Everything lives under one root: `jobs.sqlite` (what was submitted and where each job is, see `job_state`) and one
folder per job, `<root>/<namespace>/<name>/`, holding `job.yaml`, the run's log and (unless the spec names a store)
its artifacts. Folder names come only from validated DNS-1123 names and are checked to resolve inside the root.

At most `max_running` jobs run at once; up to `max_queued` more wait, first come first served, and a submission past
that is refused (QueueFull, a 429) instead of starting more processes than the machine can hold. A dispatcher thread
starts queued jobs as slots free up and notices jobs that ended, including those started before a restart (their
identity is checked in /proc, see `processes`).

Stage status comes from the artifact store's manifests (committed = Succeeded) and the progress file each running
stage keeps there (step, total steps, ETA, artifact paths), from the running process group (`llmp stage run --stage
X` = Running), from the run's log (a stage's frame lines: Running, or Failed with its error; read again only for
what the run appended since the last status read, see `log_summaries`) and from the exit code.
The store is read on a small thread pool with a time limit, so one job whose store does not answer makes its own
status say so and never holds up the others. The job's conditions (`Ready` and one per phase) are the operator's,
computed by the same function from when the job was queued, started and ended.

The logs route reads the run's log, `run.log`, not the copies of each stage's console in the store
(`<stage>/live/console.log`): every stage's output is in `run.log` as it is written, between the executor's frame
lines (which `?stage=` selects by), with the run's own lines and summary, while a store copy is up to a heartbeat
behind and holds one stage's last few MiB. The copies are for where no `run.log` exists (a pod, once its log is gone)
and are listed in each stage's status (`artifacts`).
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import yaml

from llm_platform.api import API_VERSION, KIND, Condition, JobStatus, LLMJob, SpecError, StageStatus, parse_job_text
from llm_platform.api.conditions import conditions_over, rfc3339
from llm_platform.api.dag import topological_order
from llm_platform.operator.options import AllowList
from llm_platform.operator.policy import storage_problems
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.stages.preflight import PreflightError, check
from llm_platform.trainer.stages.progress import UnreadableProgress, read_progress

from .backend import JobExists, JobNotFound, LogQuery, QueueFull, StageNotFound
from .job_state import JobRow, JobTable
from .local_logs import log_lines
from .log_summaries import LogSummaries
from .processes import identify, is_alive, running_stages, stop_group
from .run_log import StageOutcome

log = logging.getLogger(__name__)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class LocalJobs:
    def __init__(
        self,
        root: Path,
        max_running: int = 2,
        max_queued: int = 16,
        status_timeout_s: float = 5.0,
        poll_s: float = 0.5,
        allow: AllowList | None = None,
    ):
        self.root = root.resolve()
        # the S3 endpoints a job may name and the prefixes its namespace may use (the operator's lists; by default no
        # endpoint, and s3://BUCKET/NAMESPACE/...): its stages and this server's status reads use this machine's own
        # credentials (AWS_* of its environment) there, so they are checked at submit, again before a queued job
        # starts and before each status read (the lists may have narrowed since)
        self.allow = allow or AllowList()
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_running, self.max_queued = max_running, max_queued
        self.status_timeout_s, self.poll_s = status_timeout_s, poll_s
        self.table = JobTable(self.root / "jobs.sqlite")
        self._children: dict[tuple[str, str, int], subprocess.Popen] = {}
        self._lock = threading.Lock()  # one of submit / start / reap / delete at a time
        self._specs: dict[tuple[str, str, int], LLMJob] = {}
        self._reads = ThreadPoolExecutor(4, thread_name_prefix="llmp-store-read")
        self._pending_reads: dict[tuple[str, str, int], Future] = {}
        self._log_summaries = LogSummaries()  # each run.log's status, re-read only for what its run appends
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
        """Queue the job (and start it if a slot is free); PreflightError first if this server cannot run a stage or
        may not send its credentials to the job's storage endpoint."""
        if problems := storage_problems(job, self.allow, namespace):
            raise PreflightError(problems)
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
            self._log_summaries.forget(_key(row))
        self._wake.set()

    def logs(self, namespace: str, name: str, query: LogQuery) -> AsyncIterator[str]:
        """The lines of the job's `llmp run` log (every stage's output is in it, framed by the executor's lines);
        with `query.follow`, new lines as they are written until the run ends (or the stage, with `query.stage`)."""
        row = self.table.get(namespace, name)
        if row is None:
            raise JobNotFound(name)
        if query.stage is not None:
            try:
                stages = [s.name for s in self._job(row).spec.stages]
            except Exception:  # a stored spec this version cannot read (see _reported): its log is still there
                stages = [query.stage]
            if query.stage not in stages:
                raise StageNotFound(f"job '{name}' has no stage '{query.stage}'; its stages are: {', '.join(stages)}")
        return log_lines(self.log_path(row), query, lambda: self._ended(row), self.poll_s)

    def _ended(self, row: JobRow) -> bool:
        """The run is over (or the job was deleted, or submitted again under the same name)."""
        now = self.table.get(row.namespace, row.name)
        return now is None or now.seq != row.seq or now.state == "ended"

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
        try:
            refused = storage_problems(self._job(row), self.allow, row.namespace)
        except SpecError:
            refused = []  # a stored spec this version no longer reads: `llmp run` refuses it too, and logs why
        if refused:
            (folder / "run.log").write_text("".join(f"PermissionError: {p}; {p.hint}\n" for p in refused))
            self.table.ended(row, 2)
            return
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
            status = JobStatus(phase=phase, message=f"cannot report this job's status: {type(e).__name__}: {e}")
            status.conditions = local_conditions(row, status)
            return {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {"name": row.name, "namespace": row.namespace},
                "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
            }

    def _body(self, row: JobRow) -> dict[str, Any]:
        """The job as submitted plus its status; never raises for a job whose store cannot be read."""
        job = self._job(row)
        try:
            (committed, progress), store_error = self._stored(row, job), None
        except Exception as e:  # the store is the job's own: its failure is this job's status, not the listing's
            (committed, progress), store_error = ({}, {}), f"cannot read the artifact store: {type(e).__name__}: {e}"
        ahead = sum(1 for r in self.table.in_state("queued") if r.seq < row.seq) if row.state == "queued" else 0
        order = topological_order(job.spec.stages)
        log = self._log_summaries.status(_key(row), self.log_path(row), order) if row.state != "queued" else None
        status = job_status(
            row.state,
            row.exit_code,
            [(name, job.spec.stage(name).needs) for name in order],
            committed,
            running_stages(row.process) if row.state == "running" and row.process else set(),
            ahead,
            log.stages if log is not None else {},
            progress,
        )
        if status.phase == "Failed":
            status.message = log.failure_message if log is not None else "the run ended without a log"
        if store_error:
            status.message = "\n".join(filter(None, [store_error, status.message]))
        status.conditions = local_conditions(row, status)
        return {**job.to_dict(), "status": status.model_dump(mode="json", by_alias=True, exclude_none=True)}

    def _job(self, row: JobRow) -> LLMJob:
        key = _key(row)
        if key not in self._specs:
            self._specs[key] = parse_job_text(row.spec)
        return self._specs[key]

    def _stored(self, row: JobRow, job: LLMJob) -> tuple[dict[str, dict], dict[str, StageStatus]]:
        """({stage: version and metrics} of the committed stages, {stage: its progress file}), read on the pool; a
        read still running from an earlier request is waited on again rather than started twice, so a dead store ties
        up one thread, not many."""
        if refused := storage_problems(job, self.allow, row.namespace):
            raise PermissionError(str(refused[0]))
        key = _key(row)
        with self._lock:
            future = self._pending_reads.get(key)
            if future is None:
                uri, endpoint = self._storage(row, job), job.spec.storage.endpoint_url
                future = self._reads.submit(_read_store, uri, endpoint, topological_order(job.spec.stages))
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

    def log_path(self, row: JobRow) -> Path:
        return self.folder(row.namespace, row.name) / "run.log"


def job_status(
    state: str,
    exit_code: int | None,
    stages: list[tuple[str, list[str]]],
    committed: dict[str, dict],
    running: set[str],
    queued_ahead: int = 0,
    logs: dict[str, StageOutcome] | None = None,
    progress: dict[str, StageStatus] | None = None,
) -> JobStatus:
    """A job's status from what the backend knows: its state (queued, running, ended) and exit code, its stages in
    order with their needs, the committed ones (version, metrics), those whose process runs now, and what the run's
    log says of each stage (`run_log.LogSummary`), and the progress file each stage keeps in the store. Pure.

    A run that ended with exit code 0 Succeeded; one whose exit code is unknown (it ended while the server was down)
    Succeeded if every stage is committed. A stage whose process runs, or whose part of a running job's log is still
    open, is Running at the step its progress lines reached; a stage the log shows failing is Failed with the error
    from its own lines, at once (the run may still be printing its summary); what its progress file adds (step,
    total steps, ETA, last report, artifact paths) is shown with it. In a failed run without such a log,
    the stages whose inputs were all committed are where it stopped (Failed), and those downstream never ran
    (Skipped)."""
    logs, progress = logs or {}, progress or {}
    if state == "queued":
        status = JobStatus(phase="Pending", message=f"queued: {queued_ahead} job(s) ahead")
    elif state == "running":
        status = JobStatus(phase="Running")
    else:
        ok = exit_code == 0 or (exit_code is None and len(committed) == len(stages))
        status = JobStatus(phase="Succeeded" if ok else "Failed")
    failed = status.phase == "Failed"
    for name, needs in stages:
        log = logs.get(name)
        step = log.step if log is not None else None
        if name in running or (state == "running" and log is not None and log.outcome == "running"):
            stage = StageStatus(phase="Running", step=step)
        elif name in committed:
            phase = "UpToDate" if log is not None and log.outcome == "up to date" else "Succeeded"
            stage = StageStatus(phase=phase, step=step, **committed[name])
        elif log is not None and log.outcome == "failed":
            stage = StageStatus(phase="Failed", step=step, message=log.failure)
        elif failed and all(n in committed for n in needs):
            stage = StageStatus(phase="Failed", message="the run stopped here; status.message has its log")
        elif failed or any(status.stages[n].phase in ("Failed", "Skipped") for n in needs):
            stage = StageStatus(phase="Skipped", message="not run: a stage it needs did not succeed")
        else:
            stage = StageStatus()
        status.stages[name] = _with_progress(stage, progress.get(name))
    status.current_stage = ",".join(n for n, s in status.stages.items() if s.phase == "Running") or None
    return status


def local_conditions(row: JobRow, status: JobStatus) -> list[Condition]:
    """The conditions the operator would show for this job (`Ready`, then one per phase; see `api.conditions`),
    from when it was queued, started and ended, so `Ready` means the same on both backends. Pure."""
    history = [("Pending", rfc3339(row.submitted))]
    if row.started is not None and status.phase != "Pending":
        history.append(("Running", rfc3339(row.started)))
    if status.phase in ("Succeeded", "Failed"):
        history.append((status.phase, rfc3339(row.finished or row.started or row.submitted)))
    if status.message:
        message = status.message
    elif status.phase == "Running":
        message = f"running {status.current_stage}" if status.current_stage else "running"
    else:
        message = f"all {len(status.stages)} stages succeeded" if status.phase == "Succeeded" else ""
    return conditions_over(history, message)


def _with_progress(stage: StageStatus, reported: StageStatus | None) -> StageStatus:
    """The stage with what its own progress file reports (a running stage's step, total, ETA and heartbeat; where its
    artifacts are), when that file speaks of the same phase (a file left by an earlier run does not)."""
    if reported is None or reported.phase != stage.phase:
        return stage
    fields = ("step", "total_steps", "started", "updated", "eta_s", "finished", "artifacts")
    update = {f: getattr(reported, f) for f in fields if getattr(reported, f) is not None}
    if stage.phase == "Failed" and reported.message and stage.message and stage.message.startswith("the run stopped"):
        update["message"] = reported.message
    return stage.model_copy(update=update)


def _read_store(
    uri: str, endpoint_url: str | None, stages: list[str]
) -> tuple[dict[str, dict], dict[str, StageStatus]]:
    store = ArtifactStore.open(uri, endpoint_url)
    committed, progress = {}, {}
    for stage in stages:
        manifest = store.manifest(stage)
        if manifest is not None:
            committed[stage] = {"version": manifest.version, "metrics": json_safe(manifest.meta.get("metrics", {}))}
        try:
            reported = read_progress(store, stage)
        except UnreadableProgress:  # too large, torn or foreign: the stage is shown without it
            continue
        if reported is not None:
            progress[stage] = reported
    return committed, progress


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
