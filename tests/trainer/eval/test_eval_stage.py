"""The `eval` stage end to end with lm-eval tasks: a tiny pretrained model scored on MMLU and HellaSwag items next to
perplexity; the report, the per-example records and the stage metrics agree with each other."""

from __future__ import annotations

import json

import pytest

from llm_platform.api import parse_job
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.stages import run_stage
from tests.conftest import shared_path
from tests.trainer.stages.tuning import PRETRAIN
from tests.trainer.train.fixtures import MODEL, commit_tokens, pretrain_job

pytest.importorskip("lm_eval", reason="the lm-eval tests need the eval extra: pip install 'llm-platform[eval]'")

TASKS = ["mmlu_anatomy", "mmlu_virology", "hellaswag"]
BASELINES = {"chance": {"mmlu_anatomy_acc": 0.25, "hellaswag_acc": 0.25}}
MODEL_256 = MODEL | {"max_seq_len": 256}  # room for HellaSwag endings in the tiny code-trained vocabulary


def eval_job(data_dir: str):
    body = pretrain_job(PRETRAIN, MODEL_256).to_dict()
    eval_settings = {"tasks": TASKS, "data_dir": data_dir, "limit": 5, "baselines": BASELINES}
    body["spec"]["stages"].append({"name": "eval", "kind": "eval", "needs": ["pretrain"], "eval": eval_settings})
    return parse_job(body)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """(the eval stage's manifest, its committed folder) after tokenizer, pretrain and eval ran in a fresh store."""
    data = shared_path("data")
    store = ArtifactStore.open(str(tmp_path_factory.mktemp("eval") / "store"))
    commit_tokens(store)
    job = eval_job(str(data))
    run_stage(job, "pretrain", store)
    manifest = run_stage(job, "eval", store)
    return manifest, store.fetch("eval")


def test_headline_metrics_sit_beside_perplexity(evaluated):
    metrics = evaluated[0].meta["metrics"]
    assert set(metrics) == {
        "val_loss", "perplexity", "mmlu_anatomy_acc", "mmlu_virology_acc", "hellaswag_acc", "hellaswag_acc_norm",
    }  # fmt: skip
    assert all(0 <= metrics[name] <= 1 for name in metrics if name.endswith(("_acc", "_acc_norm")))


def test_report_holds_each_task_scored_on_limit_examples(evaluated):
    report = json.loads((evaluated[1] / "report" / "eval.json").read_text())
    benchmarks = report["benchmarks"]
    assert benchmarks["tasks"] == TASKS and benchmarks["limit"] == 5
    assert {task: benchmarks["n-samples"][task]["effective"] for task in TASKS} == dict.fromkeys(TASKS, 5)
    assert report["perplexity"]["tokens"] > 0


def test_per_example_records_add_up_to_the_accuracies(evaluated):
    manifest, folder = evaluated
    for task in TASKS:
        lines = (folder / "report" / "samples" / f"{task}.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        assert [r["doc_id"] for r in records] == list(range(5))
        assert sum(r["acc"] for r in records) / 5 == pytest.approx(manifest.meta["metrics"][f"{task}_acc"])


def test_markdown_report_with_plot_and_baselines(evaluated):
    folder = evaluated[1] / "report"
    text = (folder / "eval.md").read_text()
    report = json.loads((folder / "eval.json").read_text())
    assert report["scores"] == evaluated[0].meta["metrics"] and report["baselines"] == BASELINES
    assert "| mmlu_anatomy | acc |" in text and "| hellaswag | acc_norm |" in text
    assert f"| chance | mmlu_anatomy_acc | 0.2500 | {report['scores']['mmlu_anatomy_acc']:.4f} |" in text
    assert "![scores](scores.png)" in text
    assert (folder / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 0 <= report["perplexity"]["token_accuracy"] <= 1 and report["perplexity"]["seq_len"] == 256
