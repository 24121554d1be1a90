"""Admission: the same validation `llmp validate` runs, so `kubectl apply` of a bad LLMJob fails with the same
field paths and messages, plus the checks only a cluster run needs (shared storage, renderable stages, the operator's
allow-lists, and `llmp run`'s preflight against the trainer image's declared packages: see `policy`)."""

from __future__ import annotations

from typing import Any

from llm_platform.api import SpecError, parse_job

from .options import RenderOptions
from .render import render_problems


def admission_problems(
    new: dict[str, Any] | None, old: dict[str, Any] | None = None, options: RenderOptions | None = None
) -> str | None:
    """Why the API server should refuse this write of an LLMJob, or None to let it through.

    Writes that leave the spec as it was (finalizers, annotations, a job being deleted) always pass: an object
    stored before this check existed must still be deletable."""
    if new is None or (new.get("metadata") or {}).get("deletionTimestamp"):
        return None
    if old is not None and old.get("spec") == new.get("spec"):
        return None
    view = {k: new[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in new}
    try:
        job = parse_job(view)
    except SpecError as e:
        return str(e)
    problems = render_problems(job, options)
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        return f"LLMJob cannot run on a cluster ({count}):\n" + "\n".join(f"  - {p}" for p in problems)
    return None
