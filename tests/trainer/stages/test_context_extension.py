"""Context extension through the spec: a model pretrained at 64 tokens is fine-tuned `from` that stage at 256 tokens
with YaRN RoPE scaling set in the stage's `model.overrides`; overrides the checkpoint fixes are refused by name."""

from __future__ import annotations

import json

import pytest

from llm_platform.api import SpecError, parse_job
from llm_platform.trainer.model.hf import load_pretrained
from llm_platform.trainer.stages import run_stage
from tests.trainer.train.fixtures import stdlib_texts

from .tuning import tuning_job

YARN = {"type": "yarn", "factor": 4.0, "original_max_seq_len": 64}
LONG_TRAIN = {"steps": 4, "micro_batch": 2, "seq_len": 256, "lr": 2e-3, "warmup_steps": 1, "precision": "fp32",
              "log_every": 2, "document_masking": True, "reset_positions": True}  # fmt: skip


def extension_stage(dataset, overrides: dict, train: dict | None = None) -> dict:
    return {
        "name": "longer",
        "kind": "finetune",
        "model": {"from": "pretrain", "overrides": overrides},
        "finetune": {"method": "full", "dataset": {"path": str(dataset), "format": "text"}, "val_fraction": 0.0},
        "train": train or LONG_TRAIN,
    }


@pytest.fixture(scope="module")
def long_texts(pretrained):
    store, root = pretrained
    dataset = root / "long.jsonl"
    texts = [t[:1500] for t in stdlib_texts() if len(t) > 1500][:24]
    dataset.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return store, dataset


def test_finetune_from_a_stage_extends_the_context_with_rope_scaling(long_texts):
    store, dataset = long_texts
    job = tuning_job(extension_stage(dataset, {"rope_scaling": YARN, "max_seq_len": 256}))
    metrics = run_stage(job, "longer", store).meta["metrics"]
    assert metrics["loss_end"] < metrics["loss_start"]
    out = store.fetch("longer") / "model"
    config = json.loads((out / "config.json").read_text())
    assert config["max_position_embeddings"] == 256
    assert config["rope_scaling"]["rope_type"] == "yarn" and config["rope_scaling"]["factor"] == 4.0
    model = load_pretrained(out)
    assert model.config.rope_scaling["type"] == "yarn" and model.config.max_seq_len == 256
    base = load_pretrained(store.fetch("pretrain") / "model")
    assert base.config.max_seq_len == 64 and base.config.rope_scaling is None  # the pretrained model is untouched


def test_overrides_that_change_the_weights_are_refused_by_name(tmp_path):
    with pytest.raises(SpecError) as err:
        tuning_job(extension_stage(tmp_path / "x.jsonl", {"dim": 256, "max_seq_len": 256}))
    assert "spec.stages[3].model" in str(err.value)
    assert "overrides.dim: dim is fixed by the checkpoint's weights" in str(err.value)


def test_job_level_overrides_with_from_are_checked_and_applied(tmp_path):
    body = {
        "apiVersion": "llmplatform.dev/v1alpha1",
        "kind": "LLMJob",
        "metadata": {"name": "ext"},
        "spec": {
            "model": {"from": str(tmp_path), "overrides": {"n_layers": 4}},
            "stages": [{"name": "sft", "kind": "finetune", "finetune": {"dataset": {"path": "x.jsonl"}}}],
        },
    }
    with pytest.raises(SpecError, match=r"spec\.model\.overrides\.n_layers: n_layers is fixed by the checkpoint"):
        parse_job(body)
    body["spec"]["model"]["overrides"] = {"rope_scaling": YARN, "max_seq_len": 256}
    assert parse_job(body).spec.model.overrides["max_seq_len"] == 256
    body["spec"]["stages"] = [{"name": "serve", "kind": "serve"}]
    with pytest.raises(SpecError, match="stage 'serve' serves spec.model.from as it is and cannot apply overrides"):
        parse_job(body)


def test_model_from_must_name_an_upstream_model(tmp_path):
    stage = extension_stage(tmp_path / "x.jsonl", {})
    stage["model"]["from"] = "tokenizer"
    with pytest.raises(SpecError, match=r"spec\.stages\[3\]\.model\.from: 'tokenizer' is not a stage producing"):
        tuning_job(stage)


def test_load_pretrained_applies_and_refuses_overrides(pretrained):
    store, _ = pretrained
    folder = store.fetch("pretrain") / "model"
    model = load_pretrained(folder, overrides={"rope_theta": 50000.0, "max_seq_len": 128})
    assert model.config.rope_theta == 50000.0 and model.rotary.cos_half.shape[0] == 128
    with pytest.raises(ValueError, match="model.overrides.vocab_size: vocab_size is fixed"):
        load_pretrained(folder, overrides={"vocab_size": 1000})
