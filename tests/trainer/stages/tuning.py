"""Shared by the tests of the stages that tune a pretrained model (finetune, align)."""

from __future__ import annotations

from llm_platform.api import parse_job
from tests.trainer.train.fixtures import pretrain_job

PRETRAIN = {"steps": 6, "micro_batch": 4, "seq_len": 64, "lr": 3e-3, "warmup_steps": 1, "precision": "fp32"}
WORDS = ["def", "class", "return", "import", "while", "lambda", "yield", "assert"]


def tuning_job(stage: dict):
    """The pretraining job with one more stage after `pretrain`."""
    body = pretrain_job(PRETRAIN).to_dict()
    body["spec"]["stages"].append({"needs": ["pretrain"], **stage})
    return parse_job(body)
