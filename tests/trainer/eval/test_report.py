"""The Markdown report: pass@k curves from sandbox verdicts, tables, baselines, and the plot or why it is missing."""

from __future__ import annotations

import importlib.util

import pytest

from llm_platform.trainer.eval.metrics import pass_at_k
from llm_platform.trainer.eval.report import pass_at_k_curve, pass_at_k_curves, write_report

REPORT = {
    "model": "m",
    "perplexity": {"loss": 2.0, "perplexity": 7.389, "token_accuracy": 0.41, "tokens": 1000, "seq_len": 128},
    "scores": {"perplexity": 7.389, "mmlu_acc": 0.26, "flores200_eng_deu_bleu": 12.5},
    "baselines": {"chance": {"mmlu_acc": 0.25}},
}
SAMPLES = {"humaneval_sampled": [{"filter": "sandbox", "filtered_resps": [[True, False, False, True]]}]}


def test_the_curve_is_pass_at_k_for_every_k():
    verdicts = [[True, False, False, True], [False] * 4]
    curve = pass_at_k_curve(verdicts)
    assert list(curve) == [1, 2, 3, 4]
    assert curve[2] == pytest.approx((pass_at_k(4, 2, 2) + 0) / 2)
    assert pass_at_k_curves({"humaneval": [{"filter": "sandbox", "filtered_resps": [[True]]}]}) == {}  # one sample


def test_report_holds_tables_baselines_and_the_plot(tmp_path):
    text = write_report(tmp_path, REPORT, SAMPLES).read_text()
    assert "| 2.0000 | 7.389 | 0.4100 | 1,000 | 128 |" in text
    assert "| chance | mmlu_acc | 0.2500 | 0.2600 | +0.0100 |" in text
    assert "humaneval_sampled: pass@1 0.5000" in text and "![scores](scores.png)" in text
    assert (tmp_path / "scores.png").read_bytes()[:4] == b"\x89PNG"


def test_without_matplotlib_the_report_says_so(tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else find_spec(name))
    text = write_report(tmp_path, REPORT, SAMPLES).read_text()
    assert "No plot: matplotlib is not installed" in text and not (tmp_path / "scores.png").exists()


def test_only_percent_scale_scores_are_scaled():
    from llm_platform.trainer.eval.report import _scaled

    assert _scaled(12.5, "flores200_eng_deu_bleu") == (0.125, "flores200_eng_deu_bleu (/100)")
    assert _scaled(30.0, "truthfulqa_gen_rouge1_max")[0] == 0.3
    assert _scaled(0.3, "truthfulqa_gen_bleu_acc") == (0.3, "truthfulqa_gen_bleu_acc")
