import json

import pytest

from llm_platform.trainer.data.corpus import iter_corpus
from llm_platform.trainer.data.report import write_report
from llm_platform.trainer.data.run import run_pipeline

from .corpus_fixture import full_config, jsonl_source, write_mixed_corpus


def _run(tmp_path, name, **kw):
    out = tmp_path / name
    report = run_pipeline([jsonl_source(tmp_path / "in")], full_config(), out, tmp_path / f"{name}-scratch", **kw)
    return out, report


def test_every_step_does_its_part_on_a_mixed_corpus(tmp_path):
    planted = write_mixed_corpus(tmp_path / "in")
    out, report = _run(tmp_path, "out", val_fraction=0.0)
    kept = list(iter_corpus(out, "train"))
    steps = report.steps
    assert list(steps) == [
        "clean", "language", "gopher_repetition", "gopher_quality", "c4", "fineweb", "pii", "minhash_signature",
        "exact_dedup", "minhash_dedup",
    ]  # fmt: skip
    assert steps["language"].dropped["language_de"] == len(planted["german"])
    assert not any(g in kept for g in planted["german"])
    assert steps["exact_dedup"].dropped["exact_duplicate"] == 5
    near_pairs_kept = [n for n, w in zip(planted["near"], planted["wiki"], strict=False) if n in kept and w in kept]
    assert near_pairs_kept == [] and steps["minhash_dedup"].dropped["near_duplicate"] >= 15  # of 20 planted
    assert not any("jane.doe@example.com" in t for t in kept)
    assert sum("<EMAIL>" in t for t in kept) == steps["pii"].changed >= 5  # of 10 planted; the rest failed filters
    assert not any(c.strip() in kept for c in planted["code"])
    assert report.language_histogram()["en"] == len(kept)
    assert report.splits["train_docs"] == len(kept)
    for name, stats in steps.items():  # each step sees what the one before kept
        assert stats.seen == stats.kept + sum(stats.dropped.values()), name


def test_output_is_the_same_with_two_worker_processes(tmp_path):
    write_mixed_corpus(tmp_path / "in")
    one, report_one = _run(tmp_path, "one", val_fraction=0.1)
    two, report_two = _run(tmp_path, "two", val_fraction=0.1, workers=2)
    for split in ("train", "val"):
        assert list(iter_corpus(one, split)) == list(iter_corpus(two, split))
    assert {k: v.dropped for k, v in report_one.steps.items()} == {k: v.dropped for k, v in report_two.steps.items()}


def test_report_json_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    write_mixed_corpus(tmp_path / "in")
    _, report = _run(tmp_path, "out")
    files = write_report(report, tmp_path / "report")
    assert sorted(f.name for f in files) == ["languages.png", "lengths.png", "report.json", "steps.png"]
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["languages"]["de"] > 0 and sum(data["lengths_in"]["counts"]) == data["steps"]["clean"]["seen"]
    assert data["steps"]["language"]["examples"]["language_de"][0]["excerpt"]
    assert all(f.stat().st_size > 1000 for f in files)


def test_unknown_engine_is_refused(tmp_path):
    write_mixed_corpus(tmp_path / "in")
    with pytest.raises(ValueError, match="engine 'spark'"):
        _run(tmp_path, "out", engine="spark")
