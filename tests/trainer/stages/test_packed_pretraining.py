"""The pretrain stage with `train.document_masking`: windows are masked at every end-of-sequence token, positions
restart per document, and the model trains."""

from __future__ import annotations

from llm_platform.storage import ArtifactStore
from llm_platform.trainer.stages import run_stage
from tests.trainer.train.fixtures import commit_tokens, pretrain_job

from .tuning import PRETRAIN


def test_pretraining_with_document_masks_trains(tmp_path):
    store = ArtifactStore.open(str(tmp_path / "store"))
    commit_tokens(store)
    train = {**PRETRAIN, "steps": 8, "log_every": 2, "document_masking": True, "reset_positions": True}
    metrics = run_stage(pretrain_job(train), "pretrain", store).meta["metrics"]
    assert metrics["loss_end"] < metrics["loss_start"]
    assert "val_loss" in metrics
