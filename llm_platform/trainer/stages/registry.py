"""The stage runner of each stage kind: one typed entry per kind, and the kinds without one are derived from it.

A runner is anything with `run(ctx, out) -> metrics` (each runner module is one). The entries import their module
when first run, so `llmp` starts without loading torch for kinds it does not run; each entry is a plain function
that names its module, so "go to definition" and the call graph lead to the runner. The kinds themselves are
declared once, in `llm_platform.api.stage.KINDS` (what the spec accepts); adding a stage kind is its entry there,
its entry here and its own module.

Why two entries, not one: the spec layer validates a kind's sections and wiring, so it must hold the table, and it
sits below this layer, so its entries cannot name a runner (even a lazy import is a dependency, and
tests/test_import_direction.py refuses it); a runner found from the kind's name would be a registry by string again.
`test_the_stage_kinds_are_declared_once_and_the_runners_agree` holds the two together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from llm_platform.api.stage import KINDS, StageKind

from .context import StageContext
from .ray_train import Launched


class StageRunner(Protocol):
    """What every stage kind's runner does: write the stage's artifacts into `out`, return its metrics."""

    def run(self, ctx: StageContext, out: Path) -> dict[str, Any]: ...


@dataclass(frozen=True)
class LazyRunner:
    """A runner whose module is imported on first use; `load` returns that module (a `StageRunner`)."""

    load: Any  # Callable[[], StageRunner]; a module satisfies the protocol, which Callable[..., Protocol] can't say

    def run(self, ctx: StageContext, out: Path) -> dict[str, Any]:
        return self.load().run(ctx, out)


def _data() -> StageRunner:
    from . import data

    return data


def _tokenizer() -> StageRunner:
    from . import tokenizer

    return tokenizer


def _pretrain() -> StageRunner:
    from . import pretrain

    return pretrain


def _finetune() -> StageRunner:
    from . import finetune

    return finetune


def _align() -> StageRunner:
    from . import align

    return align


def _eval() -> StageRunner:
    from . import evaluate

    return evaluate


def _serve() -> StageRunner:
    from . import serve

    return serve


# training stages run where `train.parallel.launcher` says: here (alone or under torchrun) or on Ray Train's workers
RUNNERS: dict[StageKind, StageRunner] = {
    "data": LazyRunner(_data),
    "tokenizer": LazyRunner(_tokenizer),
    "pretrain": Launched(LazyRunner(_pretrain)),
    "finetune": Launched(LazyRunner(_finetune)),
    "align": Launched(LazyRunner(_align)),
    "eval": LazyRunner(_eval),
    "serve": LazyRunner(_serve),
}

# stage kinds that validate and render to cluster manifests but have no runner yet: derived, never listed by hand
NOT_BUILT: tuple[StageKind, ...] = tuple(kind for kind in KINDS if kind not in RUNNERS)
