"""The `align` stage runner. Not built yet: the spec validates and renders, but running it locally raises."""

from __future__ import annotations

from pathlib import Path

from .context import StageContext


def run(ctx: StageContext, out: Path) -> dict:
    raise NotImplementedError(
        f"stage '{ctx.stage.name}': the 'align' runner is not implemented yet in this version of llm-platform"
    )
