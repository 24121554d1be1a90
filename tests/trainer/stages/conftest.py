"""A store holding a tiny pretrained model, shared by the tests of the stages that tune one (finetune, align)."""

from __future__ import annotations

import pytest

from llm_platform.storage import ArtifactStore
from llm_platform.trainer.stages import run_stage
from tests.trainer.train.fixtures import commit_tokens, pretrain_job

from .tuning import PRETRAIN


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """(store with the tokenizer and pretrain stages committed, a scratch folder for datasets)."""
    root = tmp_path_factory.mktemp("tuning")
    store = ArtifactStore.open(str(root / "store"))
    commit_tokens(store)
    run_stage(pretrain_job(PRETRAIN), "pretrain", store)
    return store, root
