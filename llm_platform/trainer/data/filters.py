"""Every data filter, declared once: the name a spec calls it by, its settings class, and how it becomes a step.

A filter keeps a document or drops it with a reason (see `steps.Step`). Adding one is its own module (a frozen config
dataclass and a step or a check function) plus one entry in `FILTERS`; the stage spec's `FilterStep` offers one field
per entry (a test holds the two together, since `llm_platform.api` sits above this library and cannot import it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from .c4 import C4Config, C4Step
from .classifier import ClassifierConfig, ClassifierStep
from .fineweb import FineWebQualityConfig, fineweb_quality
from .gopher import GopherQualityConfig, GopherRepetitionConfig, gopher_quality, gopher_repetition
from .perplexity import PerplexityConfig, PerplexityStep
from .steps import CheckFilter, Step
from .toxicity import ToxicityConfig, ToxicityStep


@dataclass(frozen=True)
class Filter:
    """One data filter: its `name` in specs and step statistics, its `config` class, and `build(config) -> Step`."""

    name: str
    config: type
    build: Callable[[Any], Step]


def _check(name: str, check: Callable[..., str | None]) -> Callable[[Any], Step]:
    """A builder for a filter that is a pure `check(text, config) -> reason or None`."""
    return lambda config: CheckFilter(name, partial(check, c=config))


FILTERS: dict[str, Filter] = {
    f.name: f
    for f in (
        Filter("gopher_repetition", GopherRepetitionConfig, _check("gopher_repetition", gopher_repetition)),
        Filter("gopher_quality", GopherQualityConfig, _check("gopher_quality", gopher_quality)),
        Filter("c4", C4Config, C4Step),
        Filter("fineweb", FineWebQualityConfig, _check("fineweb", fineweb_quality)),
        Filter("classifier", ClassifierConfig, ClassifierStep),
        Filter("perplexity", PerplexityConfig, PerplexityStep),
        Filter("toxicity", ToxicityConfig, ToxicityStep),
    )
}


def build_filter(name: str, config: Any) -> Step:
    """The pipeline step of the filter `name` with its settings `config`."""
    if name not in FILTERS:
        raise ValueError(f"unknown filter '{name}'; choose from {', '.join(FILTERS)}")
    return FILTERS[name].build(config)
