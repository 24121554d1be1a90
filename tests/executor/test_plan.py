import sys

import pytest

from llm_platform.api import load_job
from llm_platform.executor import stage_command, stages_to_force
from llm_platform.run_summary import headline_metrics
from tests.api.test_validation import GOOD


def test_default_runs_everything_in_order_forcing_nothing():
    assert stages_to_force(load_job(GOOD), None, None) == (["data", "tok", "pretrain", "eval"], set())


def test_from_forces_the_stage_and_its_descendants():
    order, forced = stages_to_force(load_job(GOOD), "tok", None)
    assert order == ["data", "tok", "pretrain", "eval"] and forced == {"tok", "pretrain", "eval"}


def test_only_runs_one_stage():
    assert stages_to_force(load_job(GOOD), None, "pretrain") == (["pretrain"], {"pretrain"})


def test_unknown_stage_is_named():
    with pytest.raises(ValueError, match="no stage named 'train'; stages are: data, tok, pretrain, eval"):
        stages_to_force(load_job(GOOD), "train", None)


def test_stage_command_is_what_a_pod_runs():
    cmd = stage_command("job.yaml", "pretrain", "s3://b/p")
    assert cmd[0] == sys.executable
    assert cmd[1:] == [
        "-m",
        "llm_platform.cli",
        "stage",
        "run",
        "--job",
        "job.yaml",
        "--stage",
        "pretrain",
        "--storage",
        "s3://b/p",
    ]
    multi = stage_command("job.yaml", "pretrain", "s3://b/p", local_gpus=4)
    assert multi[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4"]


def test_the_summary_shows_headline_metrics_then_benchmark_scores():
    metrics = {"perplexity": 29.2, "mmlu_acc": 0.25, "val_loss": 3.4, "hellaswag_acc_norm": 0.3, "steps": 10}
    assert headline_metrics(metrics) == ["val_loss", "perplexity", "hellaswag_acc_norm", "mmlu_acc"]
