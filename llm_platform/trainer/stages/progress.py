"""A running stage's live status in the artifact store, so that it can be watched before it commits anything.

While a stage runs, rank 0 keeps two things current in the store, through the same backend as its artifacts (a
local workdir or S3), every `LLMP_PROGRESS_EVERY_S` seconds (10 by default) and once more when it ends:

    <stage>/progress.json   its `StageStatus`: phase, step / total steps, started, updated, ETA, artifact locations
    <stage>/live/...        copies of the log files it is writing (train_log.jsonl, TensorBoard event files,
                            console.log: what it printed, see `console_log`)

Neither is part of a commit: the manifest and its version folder stay the only record of what a stage produced.
`llmp status` reads these files; a failure to write them is reported once and never fails the stage.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console

from llm_platform.api.status import DONE, PROGRESS_FILE, JobStatus, StagePhase, StageStatus, progress_key
from llm_platform.storage import ArtifactStore, FileTooLarge, Manifest, StoreError
from llm_platform.storage.store import MANIFEST
from llm_platform.trainer.progress import duration, eta_s, progress_every_s

MAX_MESSAGE = 2000


def live_key(stage: str) -> str:
    return f"{stage}/live"


def location(store: ArtifactStore, key: str) -> str:
    """Where a key can be opened: its local path on a local store, its URI on S3."""
    local = store.backend.local_path(key)
    return str(local) if local is not None else f"{store.uri.rstrip('/')}/{key}"


def committed_artifacts(store: ArtifactStore, manifest: Manifest) -> dict[str, str]:
    """Each top-level folder or file of a committed version (model, report, corpus, ...) and where it is."""
    names = sorted({name.split("/")[0] for name in manifest.files})
    return {name: location(store, f"{manifest.key}/versions/{manifest.version}/{name}") for name in names}


class StageReporter:
    """Writes one stage's `StageStatus` and mirrors its log files into the store while it runs.

    Between `start()` and `finish()` a daemon thread writes every `every_s` seconds, so `updated` is a heartbeat
    even while a step, an evaluation or a checkpoint takes long. Call it as `reporter(done, total)` from a progress
    counter (`StepProgress(listener=...)`) to record the step; that costs a clock reading, no I/O."""

    def __init__(
        self,
        store: ArtifactStore,
        stage: str,
        every_s: float | None = None,
        console: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store, self.stage, self.clock = store, stage, clock
        self.every_s = every_s if every_s is not None else progress_every_s()
        self.console = console or Console(stderr=True)
        now = _now()
        self.status = StageStatus(phase="Running", started=now, updated=now, attempts=1)
        self._watched: dict[str, Path] = {}  # name under live/ -> local file or folder
        self._copied: dict[Path, tuple[int, int]] = {}  # file -> (size, mtime_ns) when last copied
        self._first: tuple[float, int] | None = None  # (clock, done) of the first progress report
        self._warned = False
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name=f"llmp-progress-{stage}", daemon=True)

    def start(self) -> None:
        """Clear the live copies of an earlier run, say the stage runs, and start the heartbeat."""
        self._attempt(lambda: self.store.backend.delete_prefix(live_key(self.stage)))
        self.write()
        self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            self.flush()

    def watch(self, path: Path, name: str | None = None, listed: bool = True) -> None:
        """Mirror a file, or every file in a folder, to `<stage>/live/<name>` while the stage runs, from when it
        exists; `listed`: name it in the status's artifacts (not a file that most runs never write)."""
        name = name or path.name
        self._watched[name] = path
        if not listed:
            return
        artifacts = dict(self.status.artifacts or {})
        artifacts[name] = location(self.store, f"{live_key(self.stage)}/{name}")
        self.status.artifacts = artifacts

    def __call__(self, done: int, total: int | None) -> None:
        now = self.clock()
        if self._first is None:
            self._first = (now, done)
        first_t, first_done = self._first
        self.status.step, self.status.total_steps = done, total
        left = eta_s(done - first_done, total - done if total else None, now - first_t)
        self.status.eta_s = None if left is None else round(left, 1)

    def flush(self) -> None:
        """Copy changed log files and write the status now."""
        self._attempt(self._mirror)
        self.write()

    def finish(self, phase: StagePhase, message: str | None = None, manifest: Manifest | None = None) -> None:
        """The stage's last word: Succeeded with its committed version and artifacts, or Failed with why."""
        self._stop.set()
        if self._heartbeat.is_alive():
            self._heartbeat.join()  # so no heartbeat can overwrite the last word
        self._attempt(self._mirror)
        now = _now()
        self.status.phase, self.status.finished, self.status.eta_s = phase, now, None
        self.status.message = message[:MAX_MESSAGE] if message else None
        if manifest is not None:
            self.status.version = manifest.version
            self.status.metrics = manifest.meta.get("metrics") or None
            self.status.artifacts = {**(self.status.artifacts or {}), **committed_artifacts(self.store, manifest)}
        self.write()

    def write(self) -> None:
        self.status.updated = _now()
        data = self.status.model_dump(mode="json", exclude_none=True)
        self._attempt(lambda: self.store.write_json(progress_key(self.stage), data))

    def _mirror(self) -> None:
        for name, path in list(self._watched.items()):  # `watch` may add one meanwhile
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            for file in files:
                st = file.stat()
                if self._copied.get(file) == (st.st_size, st.st_mtime_ns):
                    continue
                relative = name if file == path else f"{name}/{file.relative_to(path).as_posix()}"
                self.store.backend.put_file(f"{live_key(self.stage)}/{relative}", file)
                self._copied[file] = (st.st_size, st.st_mtime_ns)

    def _attempt(self, action: Callable[[], None]) -> None:
        """Run a write to the store; a failure is said once and otherwise ignored (the stage's work matters more)."""
        try:
            action()
        except Exception as e:
            if not self._warned:
                self._warned = True
                self.console.print(
                    f"[yellow]{self.stage}[/]: cannot write its live status to {self.store.uri} "
                    f"({type(e).__name__}: {e}); the stage continues, `llmp status` shows less until it commits"
                )


def _now() -> str:
    """Milliseconds: `llmp status WORKDIR` orders stages by when they started, and a small stage can start and end
    within the second its successor starts in."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# -- reading ----------------------------------------------------------------------------------------------------------
STALE_AFTER_S = 60.0  # the least silence after which a Running stage has probably stopped
STALE_HEARTBEATS = 3  # ... or this many of its heartbeats, when LLMP_PROGRESS_EVERY_S makes that longer


def stale_after_s() -> float:
    """How long a Running stage may go without a report before it is said to have probably stopped: three of the
    heartbeats `LLMP_PROGRESS_EVERY_S` sets (the stages `llmp run` starts share this environment), and never less
    than a minute (a heartbeat can be late behind a long checkpoint write). An unusable variable keeps the minute:
    the stages themselves refuse it."""
    try:
        every = progress_every_s()
    except ValueError:
        every = 0.0
    return max(STALE_AFTER_S, STALE_HEARTBEATS * every)


MAX_STORED_STAGES = 1000  # top-level entries `stored_stages` looks at; a job has at most 100 stages (api.limits)
MAX_PROGRESS_BYTES = 1 << 20  # a progress file is a few KB; one larger is not read


def stored_stages(store: ArtifactStore, limit: int = MAX_STORED_STAGES) -> tuple[list[str], bool]:
    """(the stages a store holds anything of, by name, whether its top level had more entries than `limit`).

    A stage is a top-level folder with a progress file or a committed manifest. Only the top level is listed (its
    first `limit` entries: by name on S3) and each folder is asked for those two files (one request each), so the
    cost is that of the stages, not of the checkpoints and datasets below them; past `limit` the rest are not looked
    at, and the caller says so (a job file names its stages instead)."""
    folders, more = store.backend.child_folders("", limit)
    marks = (PROGRESS_FILE, MANIFEST)  # a running or recorded stage has the first, so one request usually does
    return [name for name in folders if any(store.backend.exists(f"{name}/{mark}") for mark in marks)], more


class UnreadableProgress(ValueError):
    """A progress file that is not read: too large, not JSON, or not a `StageStatus`."""


def read_progress(store: ArtifactStore, stage: str, max_bytes: int = MAX_PROGRESS_BYTES) -> StageStatus | None:
    """The stage's progress file as a `StageStatus`, None if it has none. The job's own processes write it, so at
    most `max_bytes + 1` bytes are read (one ranged GET on S3, whatever the object's size) and UnreadableProgress,
    naming the key and what is wrong, is raised for a larger file, one that is not JSON or not a `StageStatus`.
    The message never quotes the file: on a local store it may be a link to a file that is not the job's."""
    key = progress_key(stage)
    where = f"{store.uri.rstrip('/')}/{key}"
    try:
        data = store.read_bounded(key, max_bytes, "a progress file")
    except FileTooLarge as e:
        raise UnreadableProgress(str(e)) from None
    except StoreError as e:
        raise UnreadableProgress(f"{where} cannot be read: {e}") from None
    if data is None:
        return None
    try:
        return StageStatus.model_validate(json.loads(data))
    except (ValueError, RecursionError) as e:  # RecursionError: JSON nested deeper than Python's stack
        problem = "not JSON" if not isinstance(e, ValidationError) else f"not a stage status ({_first_error(e)})"
        raise UnreadableProgress(f"{where} is {problem}; it is not read") from None


def _first_error(e: ValidationError) -> str:
    """The first field a validation error names and why, without the value (which `str(e)` would quote)."""
    first = e.errors(include_input=False, include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or "the whole file"
    return f"{field}: {first['msg']}"


def read_stage_status(store: ArtifactStore, stage: str) -> StageStatus:
    """One stage as the store shows it: its progress file, else its committed manifest (Succeeded), else Pending.
    A progress file that cannot be read (see `read_progress`) is set aside, with a message that says why."""
    try:
        reported, problem = read_progress(store, stage), None
    except UnreadableProgress as e:
        reported, problem = None, str(e)
    if reported is not None:
        return reported
    manifest = store.manifest(stage)
    if manifest is None:
        return StageStatus(message=problem)
    return StageStatus(
        phase="Succeeded",
        finished=manifest.created,
        version=manifest.version,
        metrics=manifest.meta.get("metrics") or None,
        artifacts=committed_artifacts(store, manifest),
        message=problem,
    )


def job_status_from_store(
    stages: dict[str, StageStatus], now: datetime | None = None, stale_after: float | None = None
) -> JobStatus:
    """The job's status from its stages' stored statuses, in the order given. A Running stage whose heartbeat
    stopped more than `stale_after` seconds ago (`stale_after_s()` by default) gets a message saying so (its process
    may have died). Pure given `now` and `stale_after`."""
    now = now or datetime.now(UTC)
    stale_after = stale_after_s() if stale_after is None else stale_after
    for status in stages.values():
        if status.phase == "Running" and status.updated:
            silent = (now - datetime.fromisoformat(status.updated)).total_seconds()
            if silent > stale_after:
                status.message = f"no report for {duration(silent)}: its process may have stopped"
    phases = [s.phase for s in stages.values()]
    running = [n for n, s in stages.items() if s.phase == "Running"]
    failed = [n for n, s in stages.items() if s.phase == "Failed"]
    if running:
        phase, message = "Running", f"running {', '.join(running)}"
    elif failed:
        phase, message = "Failed", f"stage {failed[0]} failed: {stages[failed[0]].message or ''}".rstrip(": ")
    elif phases and all(p in DONE for p in phases):
        phase, message = "Succeeded", f"all {len(phases)} stages done"
    else:
        phase, message = "Pending", f"{sum(p in DONE for p in phases)} of {len(phases)} stages done"
    return JobStatus(phase=phase, current_stage=",".join(running) or None, stages=stages, message=message)
