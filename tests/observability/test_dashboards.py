"""The Grafana dashboards the chart ships: valid dashboard models, wired to the datasource variable, and querying
exactly the series our metrics registries export (names taken from the real registries, not from a list)."""

from __future__ import annotations

import re

import pytest

from llm_platform.observability.operator import OperatorMetrics
from llm_platform.observability.serving import ServingMetrics
from llm_platform.observability.training import TrainingMetrics

from .dashboards import (
    NAMES,
    exported_samples,
    exprs,
    load,
    panels,
    queried_series,
    queries,
    series_in,
    variable_query,
    variables,
)

DATASOURCE = "${datasource}"
CLASSIC_SCHEMA_VERSION = 42  # the last version of Grafana's classic dashboard JSON model, the one the sidecar loads
# Prometheus base-unit suffixes and the Grafana unit a panel showing such a series should use.
UNIT_OF_SUFFIX = {"_ratio": "percentunit", "_bytes": "bytes", "_seconds": "s"}


def training_registry():
    """A TrainingMetrics updated with a record holding every field the training loop logs (MoE and GPU included)."""
    metrics = TrainingMetrics("demo", "pretrain")
    metrics.update(
        {
            "step": 10,
            "loss": 2.5,
            "val_loss": 2.7,
            "lr": 3e-4,
            "grad_norm": 0.8,
            "tokens_per_s": 5e4,
            "mfu": 0.41,
            "memory_bytes": 3 * 2**30,
            "new_tokens": 4096,
            "expert_load": {0: [0.5, 0.5], 1: [0.75, 0.25]},
        }
    )
    return metrics.registry


def operator_registry():
    """An OperatorMetrics driven through each of its public metrics, as the Reconciler drives them."""
    metrics = OperatorMetrics()
    metrics.job_phase("team", "demo", "Running")
    metrics.reconciles.labels("ok").inc()
    metrics.duration.observe(0.03)
    metrics.errors.labels("create").inc()
    metrics.children_created.labels("PyTorchJob").inc()
    metrics.stage_retries.inc()
    return metrics.registry


def serving_registry():
    """A ServingMetrics fed as the server feeds it over one request's life, a content-filter flag and a 429."""
    metrics = ServingMetrics("demo")
    metrics.running.set(1)
    metrics.waiting.set(0)
    metrics.kv_cache_usage.set(0.25)
    metrics.prompt_tokens.inc(12)
    metrics.generation_tokens.inc(8)
    metrics.ttft.observe(0.05)
    metrics.inter_token.observe(0.01)
    metrics.e2e.observe(0.2)
    metrics.finished("stop")
    metrics.flagged("pii", "input", "logged")
    metrics.refused("queue_full")
    return metrics.registry


@pytest.fixture(scope="module")
def exported():
    """Dashboard name -> {metric family -> sample names} from the registry that dashboard reads."""
    out = {
        "training": exported_samples(training_registry()),
        "operator": exported_samples(operator_registry()),
        "serving": exported_samples(serving_registry()),
    }
    for name, families in out.items():
        untouched = sorted(f for f, samples in families.items() if not samples)
        assert not untouched, f"{name}: the registry exported no sample for {untouched}; feed them above"
    return out


@pytest.mark.parametrize("name", NAMES)
def test_each_file_is_a_grafana_dashboard_model(name):
    board = load(name)
    assert board["uid"] == f"llmp-{name}" and board["title"].startswith("LLM Platform / ")
    assert board["tags"] == ["llm-platform"]
    assert board["schemaVersion"] == CLASSIC_SCHEMA_VERSION
    for panel in panels(board):
        assert {"id", "type", "title", "gridPos"} <= set(panel), panel.get("title")
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"{panel['title']} runs past the 24-column grid"


@pytest.mark.parametrize("name", NAMES)
def test_panel_ids_are_unique(name):
    ids = [p["id"] for p in panels(load(name))]
    assert len(ids) == len(set(ids)), sorted(ids)


@pytest.mark.parametrize("name", NAMES)
def test_every_panel_target_and_variable_reads_the_datasource_variable(name):
    board = load(name)
    (datasource,) = [v for v in variables(board).values() if v["type"] == "datasource"]
    assert (datasource["name"], datasource["query"]) == ("datasource", "prometheus")
    wired = {"type": "prometheus", "uid": DATASOURCE}
    for panel in panels(board):
        if panel["type"] != "row":
            assert panel["datasource"] == wired, panel["title"]
    for panel, target in queries(board):
        assert target["datasource"] == wired, f"{panel['title']} {target['refId']}"
    for variable in variables(board).values():
        if variable["type"] == "query":
            assert variable["datasource"] == wired, variable["name"]


def test_training_dashboard_selects_runs_by_job_and_stage_label_values():
    board = load("training")
    found = variables(board)
    assert variable_query(found["job"]).startswith("label_values(llmp_train_")
    assert variable_query(found["stage"]).startswith("label_values(llmp_train_")
    assert variable_query(found["stage"]).endswith(", stage)") and '$job"' in variable_query(found["stage"])
    for expr in exprs(board):
        for selector in re.findall(r"llmp_\w+(\{[^}]*\})?", expr):
            assert 'job=~"$job"' in selector and 'stage=~"$stage"' in selector, expr


@pytest.mark.parametrize("name", NAMES)
def test_rates_and_increases_use_grafana_intervals(name):
    for expr in exprs(load(name)):
        for window in re.findall(r"(?:rate|increase)\([^\[]*\[([^\]]+)\]", expr):
            assert window in ("$__rate_interval", "$__range"), expr


@pytest.mark.parametrize("name", NAMES)
def test_units_follow_the_metric_names_base_unit(name):
    for panel in panels(load(name)):
        if panel["type"] == "row" or any(" * " in t["expr"] for t in panel["targets"]):
            continue  # a product (the expert imbalance: share x experts) is no longer in the series' unit
        unit = panel["fieldConfig"]["defaults"]["unit"]
        for series in set().union(*(series_in(t["expr"]) for t in panel["targets"])):
            base = series.removesuffix("_total").removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
            for suffix, wanted in UNIT_OF_SUFFIX.items():
                if base.endswith(suffix):
                    assert unit == wanted, f"{panel['title']}: {series} wants unit {wanted}, not {unit}"


@pytest.mark.parametrize("name", NAMES)
def test_every_series_a_dashboard_queries_is_exported_by_our_code(name, exported):
    samples = set().union(*exported[name].values())
    unknown = queried_series(load(name)) - samples
    assert not unknown, f"{name}.json queries series no registry exports: {sorted(unknown)}"


@pytest.mark.parametrize("name", NAMES)
def test_every_metric_our_code_exports_is_on_a_dashboard_panel(name, exported):
    shown = set().union(*(series_in(e) for e in exprs(load(name))))
    missing = sorted(family for family, samples in exported[name].items() if not samples & shown)
    assert not missing, f"{name}.json has no panel for {missing}"
