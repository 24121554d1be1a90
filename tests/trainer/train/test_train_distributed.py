"""DDP and FSDP2 over gloo with 2 real processes (torchrun) give the loss of 1 process with the same global batch."""

import pytest
import torch

from llm_platform.trainer.model.hf import load_pretrained

from .launch import logged_losses, run_worker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def single_process_losses(token_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    run_worker(token_file, out, 1, "--micro-batch", "4", "--steps", "10")
    return logged_losses(out)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one_process_with_the_same_global_batch(
    strategy, token_file, tmp_path, single_process_losses
):
    export = tmp_path / "model"
    run_worker(
        token_file, tmp_path, 2, "--strategy", strategy, "--micro-batch", "2", "--steps", "10", "--export", str(export)
    )
    two = logged_losses(tmp_path)
    assert list(two) == list(range(1, 11))
    for step, loss in single_process_losses.items():
        assert two[step] == pytest.approx(loss, abs=1e-5), f"step {step}"
    assert single_process_losses[10] < single_process_losses[1]
    exported = load_pretrained(export)  # gathered from the shards by rank 0
    assert all(torch.isfinite(p).all() for p in exported.parameters())
    assert exported.embed_tokens.weight.shape == (384, 64)
