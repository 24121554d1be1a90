"""`llmp eval compare`: runs read from report folders and run stores, bootstrap intervals, paired deltas, the table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from llm_platform.cli import app
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.eval.compare import Run, bootstrap_delta, bootstrap_mean, compare, load_runs


def write_report(folder, accs: list[int], extra: dict | None = None) -> None:
    """An eval report as the stage writes it: scores in eval.json, one lm-eval record per example."""
    (folder / "samples").mkdir(parents=True)
    scores = {"perplexity": 12.5, "mmlu_anatomy_acc": round(sum(accs) / len(accs), 4)}
    (folder / "eval.json").write_text(json.dumps({"scores": scores} | (extra or {})))
    records = [
        {"doc_id": i, "filter": "none", "metrics": ["acc"], "acc": float(a), "target": "A"} for i, a in enumerate(accs)
    ]
    (folder / "samples" / "mmlu_anatomy.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_interval_holds_the_mean_and_narrows_with_more_examples():
    rng = np.random.default_rng(1)
    small, large = rng.random(30), rng.random(3000)
    low, high = bootstrap_mean(small)
    assert low < small.mean() < high
    low_l, high_l = bootstrap_mean(large)
    assert high_l - low_l < (high - low) / 5


def test_paired_delta_of_a_uniformly_better_run_is_positive():
    base = {str(i): float(i % 2) for i in range(200)}
    better = {k: min(1.0, v + (int(k) % 4 == 0)) for k, v in base.items()}
    low, high = bootstrap_delta(base, better)
    assert 0 < low <= high
    assert bootstrap_delta(base, base) == (0.0, 0.0)


def test_reports_and_stores_load_and_compare(tmp_path):
    write_report(tmp_path / "a" / "report", [1, 0, 1, 1, 0, 0, 1, 0])
    source = tmp_path / "staging"
    write_report(source / "report", [1, 1, 1, 1, 0, 1, 1, 0], {"baselines": {"chance": {"mmlu_anatomy_acc": 0.25}}})
    store = ArtifactStore.open(str(tmp_path / "run_b"))
    store.commit("eval", source, {"kind": "eval", "metrics": {}})
    runs = load_runs(tmp_path / "a") + load_runs(tmp_path / "run_b")
    assert [run.name for run in runs] == ["a", "run_b/eval"]
    assert runs[1].baselines == {"chance": {"mmlu_anatomy_acc": 0.25}}
    rows = {row.metric: row.cells for row in compare(runs)}
    acc = rows["mmlu_anatomy_acc"]
    assert acc[0].value == 0.5 and acc[1].delta == pytest.approx(0.25)
    assert acc[0].low < 0.5 < acc[0].high and acc[1].delta_low <= 0.25 <= acc[1].delta_high
    assert rows["perplexity"][0].low is None  # no per-example values, no interval


def test_cli_prints_runs_side_by_side(tmp_path):
    write_report(tmp_path / "base", [1, 0, 1, 0], {"baselines": {"chance": {"mmlu_anatomy_acc": 0.25}}})
    write_report(tmp_path / "tuned", [1, 1, 1, 0])
    result = CliRunner().invoke(app, ["eval", "compare", str(tmp_path / "base"), str(tmp_path / "tuned")])
    assert result.exit_code == 0, result.output
    assert "mmlu_anatomy_acc" in result.output and "+0.2500" in result.output and "baseline chance" in result.output
    assert "0.5000 [" in result.output  # the first run's interval


def test_cli_names_a_path_without_a_report(tmp_path):
    result = CliRunner().invoke(app, ["eval", "compare", str(tmp_path)])
    assert result.exit_code == 2 and "no eval report here" in result.output


def test_nothing_to_compare_is_an_error():
    with pytest.raises(ValueError, match="nothing to compare"):
        compare([])
    assert compare([Run("x", {"m": 1.0})])[0].cells[0].value == 1.0


def test_a_group_metric_pools_its_members_examples(tmp_path):
    folder = tmp_path / "r"
    (folder / "samples").mkdir(parents=True)
    (folder / "eval.json").write_text(json.dumps({"scores": {"mmlu_acc": 0.5}}))
    for subject, accs in [("anatomy", [1, 0, 1]), ("virology", [0, 1, 0, 0, 1])]:
        records = [{"doc_id": i, "filter": "none", "metrics": ["acc"], "acc": a} for i, a in enumerate(accs)]
        (folder / "samples" / f"mmlu_{subject}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run,) = load_runs(folder)
    assert len(run.items["mmlu_acc"]) == 8 and sum(run.items["mmlu_acc"].values()) == 4
