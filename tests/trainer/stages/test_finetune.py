"""The `finetune` stage end to end on CPU: a tiny pretrained model fine-tuned on instruction data, fully or with
LoRA / DoRA; the merged export and the PEFT adapter folder agree with `transformers` + `peft`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from llm_platform.trainer.model.hf import load_pretrained
from llm_platform.trainer.stages import run_stage

from .tuning import WORDS, tuning_job

FINETUNE_TRAIN = {"steps": 12, "micro_batch": 8, "seq_len": 64, "lr": 5e-3, "warmup_steps": 1, "precision": "fp32",
                  "log_every": 4, "weight_decay": 0.0}  # fmt: skip


@pytest.fixture(scope="module")
def base(pretrained):
    """The store with the pretrained model, and an instruction dataset."""
    store, root = pretrained
    dataset = root / "sft.jsonl"
    records = [{"prompt": f"Repeat {a} {b}", "response": f"{a} {b}"} for a in WORDS for b in WORDS]
    dataset.write_text("".join(json.dumps(r) + "\n" for r in records))
    return store, dataset


def finetune_job(dataset, method: str, train: dict | None = FINETUNE_TRAIN, **finetune):
    stage = {
        "name": "sft",
        "kind": "finetune",
        "finetune": {"method": method, "dataset": {"path": str(dataset)}, "lora": {"rank": 4, "alpha": 8},
                     **finetune},
    }  # fmt: skip
    if train is not None:
        stage["train"] = train
    return tuning_job(stage)


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_adapter_finetuning_learns_and_its_adapter_loads_in_peft(base, method):
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    store, dataset = base
    metrics = run_stage(finetune_job(dataset, method), "sft", store).meta["metrics"]
    assert metrics["loss_end"] < metrics["loss_start"]
    total = sum(p.numel() for p in load_pretrained(store.fetch("pretrain") / "model").parameters())
    assert 0 < metrics["trainable_params"] < total / 5  # the adapters only
    assert metrics["train_examples"] + metrics["val_examples"] == len(WORDS) ** 2
    assert "val_loss" in metrics

    out = store.fetch("sft")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (out / "adapter").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "train_log.jsonl"} <= {
        p.name for p in (out / "model").iterdir()
    }
    ids = torch.randint(0, 384, (2, 12), generator=torch.Generator().manual_seed(1))
    pretrained = store.fetch("pretrain") / "model"
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(pretrained)  # AutoPeftModel finds the committed base
    with torch.no_grad():
        merged = load_pretrained(out / "model").eval()(ids)
        hf_base = transformers.AutoModelForCausalLM.from_pretrained(pretrained).eval()
        with_adapter = peft.PeftModel.from_pretrained(hf_base, out / "adapter").eval()
        torch.testing.assert_close(with_adapter(ids).logits, merged, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(load_pretrained(pretrained).eval()(ids), merged, atol=1e-3)


def test_full_finetuning_without_a_train_section_runs_one_epoch_at_default_settings(base):
    store, dataset = base
    job = finetune_job(dataset, "full", train=None, epochs=1.0)
    metrics = run_stage(job, "sft", store).meta["metrics"]
    assert metrics["trainable_params"] == sum(p.numel() for p in load_pretrained(store.fetch("pretrain") / "model")
                                              .parameters())  # fmt: skip
    assert metrics["steps"] >= 1
    assert not (store.fetch("sft") / "adapter").exists()


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_lora_under_two_processes_exports_whole_weights_from_rank_0(base, tmp_path, strategy):
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    store, dataset = base
    train = {**FINETUNE_TRAIN, "micro_batch": 4, "device": "cpu", "parallel": {"strategy": strategy}}
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(finetune_job(dataset, "lora", train=train).to_dict(), sort_keys=False))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    stage = ["-m", "llm_platform.cli", "stage", "run", "--job", str(job_file), "--stage", "sft", "--storage", store.uri]
    command = torchrun + stage
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = store.manifest("sft").meta["metrics"]
    assert metrics["loss_end"] < metrics["loss_start"]
    out = store.fetch("sft")
    ids = torch.randint(0, 384, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        merged = load_pretrained(out / "model").eval()(ids)
        hf_base = transformers.AutoModelForCausalLM.from_pretrained(store.fetch("pretrain") / "model").eval()
        with_adapter = peft.PeftModel.from_pretrained(hf_base, out / "adapter").eval()
        torch.testing.assert_close(with_adapter(ids).logits, merged, atol=1e-4, rtol=1e-4)


def test_qlora_finetuning_learns_over_an_nf4_base_and_exports_what_it_trained(base):
    from llm_platform.trainer.adapters import dequantize_base, load_peft_adapter, quantize_base

    store, dataset = base
    metrics = run_stage(finetune_job(dataset, "qlora"), "sft", store).meta["metrics"]
    assert metrics["loss_end"] < metrics["loss_start"]
    out = store.fetch("sft")
    merged = load_pretrained(out / "model").eval()
    # the dequantised NF4 base plus the saved adapter is the exported model
    rebuilt = load_pretrained(store.fetch("pretrain") / "model")
    quantize_base(rebuilt, torch.float32)
    dequantize_base(rebuilt)
    load_peft_adapter(rebuilt, out / "adapter")
    ids = torch.randint(0, 384, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(ids), merged(ids), atol=1e-4, rtol=1e-4)
