"""One runner per stage kind: `run(ctx, out) -> metrics`, writing the stage's artifacts into the folder `out`.

`run_stage` is what `llmp stage run` (and so every pod) executes: it resolves inputs, runs the kind's runner, and
commits the output folder atomically with a manifest that records settings fingerprint, input versions and metrics.
"""

from __future__ import annotations

import importlib
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llm_platform.api import LLMJob
from llm_platform.storage import ArtifactStore, Manifest

from .context import StageContext
from .preflight import check

# the module of each kind's runner; the kinds without one yet are preflight.NOT_BUILT
RUNNERS = {
    "data": "llm_platform.trainer.stages.data",
    "tokenizer": "llm_platform.trainer.stages.tokenizer",
    "pretrain": "llm_platform.trainer.stages.pretrain",
    "finetune": "llm_platform.trainer.stages.finetune",
    "align": "llm_platform.trainer.stages.align",
    "eval": "llm_platform.trainer.stages.evaluate",
    "serve": "llm_platform.trainer.stages.serve",
}


def make_context(job: LLMJob, stage_name: str, store: ArtifactStore, scratch: Path) -> StageContext:
    return StageContext(job=job, stage=job.spec.stage(stage_name), store=store, scratch=scratch)


def is_up_to_date(job: LLMJob, stage_name: str, store: ArtifactStore) -> tuple[bool, str]:
    """Whether the committed artifacts of a stage match its current settings and inputs, and why not."""
    manifest = store.manifest(stage_name)
    if manifest is None:
        return False, "not committed"
    with tempfile.TemporaryDirectory() as tmp:
        fingerprint = make_context(job, stage_name, store, Path(tmp)).fingerprint()
    if manifest.meta.get("fingerprint") != fingerprint:
        return False, "settings or inputs changed since it was committed"
    return True, f"committed {manifest.created}"


def run_stage(job: LLMJob, stage_name: str, store: ArtifactStore) -> Manifest:
    """Run one stage and commit its artifacts. Nothing is visible in the store unless the runner finished.

    Raises `PreflightError` before starting if the stage's settings need something this install cannot do."""
    check([job.spec.stage(stage_name)])
    with tempfile.TemporaryDirectory(prefix=f"llmp-{stage_name}-") as tmp:
        ctx = make_context(job, stage_name, store, Path(tmp))
        runner = importlib.import_module(RUNNERS[ctx.stage.kind])
        # what the output is derived from, recorded as it was when the stage started
        fingerprint, inputs = ctx.fingerprint(), ctx.input_versions()
        started = datetime.now(UTC)
        t0 = time.perf_counter()
        out = Path(tmp) / "out"
        out.mkdir()
        metrics: dict[str, Any] = runner.run(ctx, out) or {}
        meta = {
            "stage": stage_name,
            "kind": ctx.stage.kind,
            "fingerprint": fingerprint,
            "inputs": inputs,
            "metrics": metrics,
            "started": started.isoformat(timespec="seconds"),
            "duration_s": round(time.perf_counter() - t0, 2),
        }
        if _is_rank_zero():
            return store.commit(stage_name, out, meta)
        return Manifest(key=stage_name, version="", created="", files={}, meta=meta)


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0
