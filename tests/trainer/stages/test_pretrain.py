"""The `pretrain` stage end to end on CPU: train, export in HF format, resume from the store's checkpoints."""

import json

import pytest
import torch

from llm_platform.storage import ArtifactStore
from llm_platform.trainer.model.hf import load_pretrained
from llm_platform.trainer.stages import run_stage
from llm_platform.trainer.tokenizer import Tokenizer
from tests.trainer.train.fixtures import commit_tokens, pretrain_job

TRAIN = {
    "steps": 8,
    "micro_batch": 4,
    "seq_len": 32,
    "lr": 3e-3,
    "warmup_steps": 2,
    "precision": "fp32",
    "log_every": 2,
    "checkpoint_every": 4,
    "eval_batches": 2,
}


@pytest.fixture
def store(tmp_path):
    store = ArtifactStore.open(str(tmp_path / "store"))
    commit_tokens(store)
    return store


def test_pretrain_commits_an_hf_model_with_its_tokenizer_and_log(store):
    manifest = run_stage(pretrain_job(TRAIN), "pretrain", store)
    metrics = manifest.meta["metrics"]
    assert {"loss_start", "loss_end", "tokens_per_s", "steps", "val_loss", "params"} <= set(metrics)
    assert metrics["steps"] == 8 and metrics["loss_end"] < metrics["loss_start"]
    model_dir = store.fetch("pretrain") / "model"
    assert {"config.json", "model.safetensors", "tokenizer.json", "train_log.jsonl"} <= {
        p.name for p in model_dir.iterdir()
    }
    log = [json.loads(line) for line in (model_dir / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6, 8]
    assert {"step", "loss", "lr", "grad_norm", "tokens_per_s"} <= set(log[-1])
    assert Tokenizer.load(model_dir).vocab_size == 384


def test_exported_model_loads_in_transformers_with_the_same_logits(store):
    transformers = pytest.importorskip("transformers")
    run_stage(pretrain_job(TRAIN), "pretrain", store)
    model_dir = store.fetch("pretrain") / "model"
    ours = load_pretrained(model_dir).eval()
    theirs = transformers.AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = torch.randint(0, 384, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), theirs(ids).logits, atol=1e-4, rtol=1e-4)


def test_rerun_resumes_from_the_stage_checkpoints_unless_the_spec_changed(store):
    first = run_stage(pretrain_job(TRAIN), "pretrain", store).meta
    fingerprint = first["fingerprint"]
    assert store.read_json(f"pretrain/checkpoints/{fingerprint}/latest") == {"step": 8, "nodes": 1}
    store.delete("pretrain")  # as if the process died after its last checkpoint, before the final commit
    again = run_stage(pretrain_job(TRAIN), "pretrain", store).meta
    assert again["metrics"]["resumed_from_step"] == 8
    assert again["metrics"]["loss_start"] == first["metrics"]["loss_start"]
    changed = run_stage(pretrain_job({**TRAIN, "lr": 1e-3}), "pretrain", store).meta
    assert changed["fingerprint"] != fingerprint and "resumed_from_step" not in changed["metrics"]


def test_a_vocab_size_override_that_disagrees_with_the_tokenizer_is_refused(store):
    job = pretrain_job(TRAIN, model={"dim": 64, "n_layers": 2, "n_heads": 4, "ffn_dim": 128, "vocab_size": 1000})
    with pytest.raises(ValueError, match="overrides.vocab_size=1000 differs from the tokenizer's 384"):
        run_stage(job, "pretrain", store)
