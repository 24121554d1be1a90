"""Context-parallel attention over 2 processes (gloo) equals attention on one process: outputs and the gradients of
queries, keys and values, with GQA and a sliding window; a model's loss and parameter gradients; and three steps of
the engine's loop under FSDP2 give the losses of one process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llm_platform.trainer.train.config import ParallelConfig, TrainConfig, world_size_problem
from llm_platform.trainer.train.distributed import DistEnv

from .context_parallel_worker import training_losses
from .launch import REPO, worker_env


def test_two_processes_match_one(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               "-m", "tests.trainer.train.context_parallel_worker", "--out", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO, env=worker_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = training_losses(DistEnv(), None)
    for rank in (0, 1):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result.pop("losses") == pytest.approx(reference, abs=1e-5)  # FSDP2 over the group: same training
        for case, errors in result.items():
            for name, error in errors.items():
                assert error < 1e-5, f"rank {rank}, {case}: {name} differs by {error}"


def test_settings_are_checked():
    with pytest.raises(ValueError, match="must be a multiple of 2 x context_parallel = 8"):
        TrainConfig(steps=1, seq_len=100, context_parallel=4)
    with pytest.raises(ValueError, match="context_parallel: not with document_masking"):
        TrainConfig(steps=1, context_parallel=2, document_masking=True)
    with pytest.raises(ValueError, match="runs under parallel.strategy ddp or fsdp"):
        TrainConfig(steps=1, context_parallel=2, parallel=ParallelConfig(strategy="deepspeed"))
    assert "does not divide the 3 process(es)" in world_size_problem(TrainConfig(steps=1, context_parallel=2), 3)
    assert TrainConfig(steps=1, seq_len=64, context_parallel=2, micro_batch=1).tokens_per_step(4) == 2 * 64
