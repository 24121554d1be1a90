"""Reading the Grafana dashboards the chart ships, and the series names our metrics registries export.

Both test files compare the two: the names a dashboard queries must be names our code exports, and the other way round.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "helm" / "llm-platform" / "dashboards"
NAMES = ("training", "operator", "serving")

SERIES = re.compile(r"\bllmp_[A-Za-z0-9_]+|\bvllm:[A-Za-z0-9_:]+")  # ours, and vLLM's names the server exports
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
LABEL_VALUES = re.compile(r"^label_values\((?P<match>.+),\s*(?P<label>\w+)\)$")


def load(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARDS / f"{name}.json").read_text())


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and the panels folded inside collapsed rows."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(board: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every target of every panel."""
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield panel, target


def exprs(board: dict[str, Any]) -> list[str]:
    return [target["expr"] for _, target in queries(board)]


def variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board["templating"]["list"]}


def variable_query(variable: dict[str, Any]) -> str:
    """The PromQL-ish query of a query variable (Grafana stores either a string or the editor's object)."""
    query = variable["query"]
    return query["query"] if isinstance(query, dict) else query


def series_in(text: str) -> set[str]:
    return set(SERIES.findall(text))


def queried_series(board: dict[str, Any]) -> set[str]:
    """Every llmp_* (and vllm:*) series name in the board's panel queries and template variable queries."""
    found = set().union(*(series_in(e) for e in exprs(board)))
    for variable in variables(board).values():
        if variable["type"] == "query":
            found |= series_in(variable_query(variable))
    return found


def instantiate(expr: str, values: dict[str, str]) -> str:
    """The query as Grafana sends it once the variables are filled in; a variable without a value is an error."""

    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for the Grafana variable ${name} in: {expr}")
        return values[name]

    return VARIABLE.sub(value, expr)


def exported_samples(registry: CollectorRegistry) -> dict[str, set[str]]:
    """Metric family name -> the sample names the registry exposes for it (a counter's `_total`, a histogram's
    `_bucket`/`_sum`/`_count`), without the `_created` timestamps prometheus_client adds, which no panel plots."""
    return {
        family.name: {s.name for s in family.samples if s.name != f"{family.name}_created"}
        for family in registry.collect()
    }
