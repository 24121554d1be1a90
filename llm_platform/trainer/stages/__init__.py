"""One runner per stage kind: `run(ctx, out) -> metrics`, writing the stage's artifacts into the folder `out`.

`run_stage` is what `llmp stage run` (and so every pod) executes: it resolves inputs, runs the kind's runner, and
commits the output folder atomically with a manifest that records settings fingerprint, input versions and metrics.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llm_platform.api import LLMJob
from llm_platform.storage import ArtifactStore, CorruptArtifact, Manifest, StoreError

from .console_log import ConsoleLog
from .context import StageContext
from .preflight import check
from .progress import StageReporter
from .registry import NOT_BUILT, RUNNERS, StageRunner

__all__ = ["NOT_BUILT", "RUNNERS", "StageRunner", "is_up_to_date", "make_context", "run_stage"]


def make_context(job: LLMJob, stage_name: str, store: ArtifactStore, scratch: Path) -> StageContext:
    return StageContext(job=job, stage=job.spec.stage(stage_name), store=store, scratch=scratch)


def is_up_to_date(job: LLMJob, stage_name: str, store: ArtifactStore) -> tuple[bool, str]:
    """Whether the committed artifacts of a stage match its current settings and inputs, and why not.

    A stage whose committed files do not match its manifest is not up to date, so `llmp run` re-runs it instead of
    handing a corrupt artifact to the next stage. Every file's presence and size are checked (a stat per file, one
    listing on S3). On a local store the sha256 of every file is checked too: it costs one read of local disk, and
    only for files changed since they were last verified (see `ArtifactStore.verify`). On S3, hashing would mean
    downloading every artifact to decide freshness; there the consumer's `fetch` hashes what it downloads, and a
    mismatch is a `CorruptArtifact` naming the file."""
    try:
        manifest = store.manifest(stage_name)
        if manifest is None:
            return False, "not committed"
        with tempfile.TemporaryDirectory() as tmp:
            fingerprint = make_context(job, stage_name, store, Path(tmp)).fingerprint()
        if manifest.meta.get("fingerprint") != fingerprint:
            return False, "settings or inputs changed since it was committed"
        store.verify(stage_name, manifest, content=store.reads_in_place)
    except CorruptArtifact as e:
        return False, f"its committed file '{e.file}' has {e.actual} instead of {e.expected}"
    except StoreError as e:  # an unreadable manifest (its own or an input's): running again replaces it
        return False, str(e)
    return True, f"committed {manifest.created}"


def run_stage(job: LLMJob, stage_name: str, store: ArtifactStore, capture_console: bool = False) -> Manifest:
    """Run one stage and commit its artifacts. Nothing is visible in the store unless the runner finished.

    With `capture_console` (what `llmp stage run` asks for: the process is the stage's own), what the stage prints
    is also kept in `<stage>/live/console.log` in the store, with the traceback of a failure at its end (see
    `console_log`). Raises `PreflightError` before starting if the stage's settings need something this install
    cannot do, and `LeaseHeld` if another process is running the same stage on the same store."""
    check(job, [stage_name], store.uri)
    # One writer per stage: a second run of it (a retried pod while the old one runs, a second `llmp run` on the
    # workdir) stops here with `LeaseHeld` instead of racing this one's checkpoints and commit. On S3 it first waits
    # out two lease lifetimes: a retried pod whose predecessor died gets the stage once the dead one's lease expires.
    # A local lock is freed the moment its holder dies, so there a held lock means a live run: fail at once.
    wait_s = 0.0 if store.reads_in_place else 2 * store.lease_ttl_s
    writing = store.lease(stage_name, wait_s) if _is_rank_zero() else contextlib.nullcontext()
    with writing, tempfile.TemporaryDirectory(prefix=f"llmp-{stage_name}-") as tmp:
        # only rank 0 reports; captured before the context makes its console, which then sees where output goes
        console = _captured_console(Path(tmp) / "console") if capture_console and _is_rank_zero() else None
        with console or contextlib.nullcontext():
            ctx = make_context(job, stage_name, store, Path(tmp))
            if _is_rank_zero():
                ctx.progress = StageReporter(store, stage_name, console=ctx.console)
                if console is not None:
                    ctx.progress.watch(console.path)
                    ctx.progress.watch(console.previous, listed=False)  # once a rotation made it
                ctx.progress.start()
            try:
                manifest = _run(ctx, Path(tmp) / "out")
            except BaseException as e:
                if console is not None:
                    console.stop()
                    console.note(traceback.format_exc())
                if ctx.progress is not None:
                    ctx.progress.finish("Failed", f"{type(e).__name__}: {e}")
                raise
            if console is not None:
                console.stop()  # all of it in the file before the last mirror
            if ctx.progress is not None:
                ctx.progress.finish("Succeeded", manifest=manifest)
            return manifest


def _captured_console(folder: Path) -> ConsoleLog | None:
    """This process's output teed into `folder/console.log`, or None (and a warning) where it cannot be: the copy
    in the store is for watching a stage, never a reason for it to fail."""
    try:
        return ConsoleLog(folder).start()
    except OSError as e:
        print(f"warning: this stage's output is not copied to the store ({type(e).__name__}: {e})", file=sys.stderr)
        return None


def _run(ctx: StageContext, out: Path) -> Manifest:
    runner = RUNNERS[ctx.stage.kind]
    # what the output is derived from, recorded as it was when the stage started
    fingerprint, inputs = ctx.fingerprint(), ctx.input_versions()
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    out.mkdir()
    metrics: dict[str, Any] = runner.run(ctx, out) or {}
    meta = {
        "stage": ctx.stage.name,
        "kind": ctx.stage.kind,
        "fingerprint": fingerprint,
        "inputs": inputs,
        "metrics": metrics,
        "started": started.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - t0, 2),
    }
    if _is_rank_zero():
        return ctx.store.commit(ctx.stage.name, out, meta)
    return Manifest(key=ctx.stage.name, version="", created="", files={}, meta=meta)


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0
