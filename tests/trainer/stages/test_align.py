"""The `align` stage end to end on CPU: DPO from a tiny pretrained model on preference pairs, with LoRA and on the
whole model; the first step's loss is log 2 (policy = reference), and afterwards the exported model prefers the
chosen responses."""

from __future__ import annotations

import json
import math

import pytest
import torch

from llm_platform.trainer.data.preference import collate_pairs, load_preference_data
from llm_platform.trainer.data.sft import shifted
from llm_platform.trainer.model.hf import load_pretrained
from llm_platform.trainer.stages import run_stage
from llm_platform.trainer.tokenizer import Tokenizer
from llm_platform.trainer.train.dpo import reference_logps

from .tuning import WORDS, tuning_job

TRAIN = {"steps": 40, "micro_batch": 8, "seq_len": 64, "lr": 0.005, "warmup_steps": 1, "precision": "fp32",
         "log_every": 1, "weight_decay": 0.0}  # fmt: skip


@pytest.fixture(scope="module")
def pairs(pretrained):
    store, root = pretrained
    dataset = root / "prefs.jsonl"
    records = [{"prompt": f"Repeat {a}", "chosen": a, "rejected": b} for a in WORDS for b in WORDS if a != b]
    dataset.write_text("".join(json.dumps(r) + "\n" for r in records))
    return store, dataset


def align_job(dataset, **align):
    stage = {"name": "dpo", "kind": "align", "train": TRAIN,
             "align": {"beta": 0.5, "dataset": {"path": str(dataset), "format": "preference"}, **align}}  # fmt: skip
    return tuning_job(stage)


def preference_accuracy(model_dir, reference_dir, dataset) -> float:
    """Share of pairs whose chosen response gains more log-probability than the rejected, against the reference."""
    tokenizer = Tokenizer.load(model_dir)
    data = load_preference_data(tokenizer, str(dataset), max_len=64)
    batch = shifted(collate_pairs(data.train, 0), torch.device("cpu"))
    policy = reference_logps(load_pretrained(model_dir), batch["input_ids"], batch["labels"])
    reference = reference_logps(load_pretrained(reference_dir), batch["input_ids"], batch["labels"])
    gain = (policy - reference).chunk(2)
    return (gain[0] > gain[1]).float().mean().item()


@pytest.mark.parametrize("lora", [{"rank": 8, "alpha": 16}, None], ids=["lora", "full"])
def test_dpo_starts_at_log_2_and_ends_preferring_the_chosen(pairs, lora):
    store, dataset = pairs
    metrics = run_stage(align_job(dataset, lora=lora), "dpo", store).meta["metrics"]
    assert metrics["loss_start"] == pytest.approx(math.log(2), abs=1e-3)
    assert metrics["loss_end"] < metrics["loss_start"]
    assert metrics["train_pairs"] + metrics["val_pairs"] == len(WORDS) * (len(WORDS) - 1)
    assert "val_loss" in metrics
    out = store.fetch("dpo")
    assert (out / "adapter" / "adapter_config.json").exists() == (lora is not None)
    accuracy = preference_accuracy(out / "model", store.fetch("pretrain") / "model", dataset)
    assert accuracy > 0.7  # 0.5 is chance; this run gives 0.93 with LoRA and 0.84 on the whole model


def test_a_reward_model_ranks_held_out_pairs_and_scores_through_its_folder(pairs):
    from llm_platform.trainer.train.reward import load_reward_model, scored_mask

    store, _ = pairs
    dataset = pairs[1].parent / "separable.jsonl"
    good, bad = WORDS[:4], WORDS[4:]  # separable: any good word is preferred to any bad one, whatever the prompt
    records = [{"prompt": f"Repeat {p}", "chosen": g, "rejected": b} for p in WORDS for g in good for b in bad]
    dataset.write_text("".join(json.dumps(r) + "\n" for r in records))
    job = align_job(dataset, method="reward", beta=0.1, val_fraction=0.3)
    metrics = run_stage(job, "dpo", store).meta["metrics"]
    assert metrics["loss_start"] == pytest.approx(math.log(2), abs=1e-3)  # zero head: every reward 0
    assert metrics["loss_end"] < metrics["loss_start"]
    print(f"reward model held-out pair accuracy: {metrics['val_accuracy']:.3f} on {metrics['val_pairs']} pairs")
    assert metrics["val_accuracy"] > 0.9
    reward = load_reward_model(store.fetch("dpo") / "model")
    tokenizer = Tokenizer.load(store.fetch("dpo") / "model")
    data = load_preference_data(tokenizer, str(dataset), max_len=64, val_fraction=0.3)  # the stage's split
    batch = shifted(collate_pairs(data.val, 0), torch.device("cpu"))

    chosen, rejected = reward.score(batch["input_ids"], scored_mask(batch)).chunk(2)
    assert (chosen > rejected).float().mean().item() == pytest.approx(metrics["val_accuracy"], abs=0.02)
