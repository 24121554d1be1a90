"""`llmp run` end to end on a tiny job: real subprocesses per stage, resumption, and recovery from SIGKILL."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_platform.storage import ArtifactStore
from tests.processes import llmp as run_llmp

from ..observability.prometheus import free_port

JOB = """\
apiVersion: llmplatform.dev/v1alpha1
kind: LLMJob
metadata: {name: tiny}
spec:
  model:
    preset: llama-tiny
    overrides: {dim: 64, n_layers: 2, n_heads: 4, num_kv_heads: 2, ffn_dim: 128, max_seq_len: 64}
  stages:
  - name: data
    kind: data
    data:
      sources: [{type: stdlib, include: "json/*.py"}, {type: stdlib, include: "email/*.py"}]
      clean: {min_chars: 100}
      val_fraction: 0.2
  - {name: tokenizer, kind: tokenizer, needs: [data], tokenizer: {vocab_size: 384}}
  - name: pretrain
    kind: pretrain
    needs: [tokenizer]
    train: {steps: STEPS, micro_batch: 4, seq_len: 32, lr: 3.0e-3, warmup_steps: 2, precision: fp32, log_every: 2,
            checkpoint_every: 20}
  - name: eval
    kind: eval
    needs: [pretrain]
    eval: {limit: 2, batch_size: 2, generate: {prompts: ["def "], max_new_tokens: 4}}
  - name: serve
    kind: serve
    needs: [pretrain]
    serve: {duration: 0.5, sample: {prompt: "def ", max_tokens: 8}}
"""


def llmp(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return run_llmp(*args, timeout=600, **kwargs)  # whole pipelines


def write_job(tmp_path: Path, steps: int) -> Path:
    path = tmp_path / "job.yaml"
    serving = f"serve: {{port: {free_port()}, duration"  # a free port, not the default 8000
    path.write_text(JOB.replace("STEPS", str(steps)).replace("serve: {duration", serving))
    return path


def assert_every_commit_complete(store: ArtifactStore, stages: list[str]) -> None:
    """Each committed stage has all the files its manifest lists, byte for byte."""
    for stage in stages:
        manifest = store.manifest(stage)
        if manifest is None:
            continue
        folder = store.fetch(stage)
        for name, info in manifest.files.items():
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == info["sha256"], f"{stage}/{name}"


@pytest.mark.slow
def up_to_date(stdout: str) -> int:
    """How many stages `llmp run` found up to date (it announces each on a line starting with ⏭)."""
    return sum(1 for line in stdout.splitlines() if line.startswith("⏭"))


def test_quickstart_shape_runs_then_resumes_then_reruns_what_changed(tmp_path):
    job = write_job(tmp_path, steps=6)
    first = llmp("run", str(job), "--workdir", str(tmp_path / "w"))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Summary" in first.stdout and "perplexity=" in first.stdout
    assert "answer=" in first.stdout  # the serve stage answered its sample chat over HTTP, then stopped
    store = ArtifactStore.open(str(tmp_path / "w"))
    assert all(store.exists(s) for s in ("data", "tokenizer", "pretrain", "eval", "serve"))
    assert (store.fetch("pretrain") / "model" / "config.json").is_file()
    report = store.fetch("eval") / "report" / "eval.md"
    assert f"eval report: {report}\n" in first.stdout and report.is_file()

    again = llmp("run", str(job), "--workdir", str(tmp_path / "w"))
    assert again.returncode == 0 and up_to_date(again.stdout) == 5, again.stdout

    # bytes flipped in the committed model: pretraining is no longer up to date, so it runs again (and eval with it)
    weights = next((store.fetch("pretrain") / "model").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[len(data) // 2 :: 997] = bytes(b ^ 0xFF for b in data[len(data) // 2 :: 997])
    weights.write_bytes(bytes(data))
    repaired = llmp("run", str(job), "--workdir", str(tmp_path / "w"))
    assert repaired.returncode == 0 and up_to_date(repaired.stdout) == 2, repaired.stdout
    store.verify("pretrain")

    write_job(tmp_path, steps=7)  # a changed training setting re-runs pretrain and what depends on it, only
    changed = llmp("run", str(job), "--workdir", str(tmp_path / "w"))
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert up_to_date(changed.stdout) == 2
    assert store.manifest("pretrain").meta["metrics"]["steps"] == 7


@pytest.mark.slow
def test_sigkill_during_a_stage_then_resume_completes(tmp_path):
    job = write_job(tmp_path, steps=240)
    workdir = tmp_path / "w"
    store = ArtifactStore.open(str(workdir))
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_platform.cli", "run", str(job), "--workdir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def checkpointed() -> bool:  # a checkpoint counts once its `latest` pointer is written, after its files
        return any(key.endswith("/latest") for key in store.backend.list("pretrain/checkpoints"))

    deadline = time.monotonic() + 300
    while not checkpointed() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert checkpointed(), "the run never wrote a pretraining checkpoint"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not store.exists("pretrain")
    assert_every_commit_complete(store, ["data", "tokenizer", "pretrain", "eval"])

    resumed = llmp("run", str(job), "--workdir", str(workdir))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert up_to_date(resumed.stdout) == 2  # data and tokenizer were not redone
    assert_every_commit_complete(store, ["data", "tokenizer", "pretrain", "eval"])
    assert store.manifest("eval").meta["metrics"]["perplexity"] > 1
    # pretraining itself resumed from its last checkpoint rather than starting over
    assert store.manifest("pretrain").meta["metrics"].get("resumed_from_step", 0) > 0


def test_bad_spec_exits_2_before_running_anything(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(JOB.replace("STEPS", "0"))
    result = llmp("run", str(path), "--workdir", str(tmp_path / "w"))
    assert result.returncode == 2
    assert "spec.stages[2].train.steps" in result.stderr
    assert not (tmp_path / "w").exists()


WHOLE_PIPELINE = """\
  - name: sft
    kind: finetune
    needs: [pretrain]
    finetune: {method: lora, lora: {rank: 4, alpha: 8}, dataset: {path: "builtin:stdlib-functions", max_examples: 24}}
    train: {steps: 3, micro_batch: 2, seq_len: 256, lr: 3.0e-3, warmup_steps: 1, precision: fp32, log_every: 1}
  - name: dpo
    kind: align
    needs: [sft]
    align: {lora: {rank: 4, alpha: 8}, val_fraction: 0.2,
            dataset: {path: "builtin:stdlib-functions", format: preference, max_examples: 16}}
    train: {steps: 3, micro_batch: 2, seq_len: 256, lr: 3.0e-3, warmup_steps: 1, precision: fp32, log_every: 1}
"""


@pytest.mark.slow
def test_the_whole_pipeline_on_builtin_data_reports_losses_rewards_scores_answer_and_every_artifact(tmp_path):
    text = write_job(tmp_path, steps=4).read_text().replace("max_seq_len: 64", "max_seq_len: 256")  # room for answers
    text = text.replace("  - name: eval\n", WHOLE_PIPELINE + "  - name: eval\n").replace(
        "needs: [pretrain]\n    eval", "needs: [dpo]\n    eval"
    )
    text = text.replace("eval: {limit: 2,", "eval: {limit: 2, metrics: [perplexity, stdlib_functions],")
    job = tmp_path / "whole.yaml"
    job.write_text(text.replace("needs: [pretrain]\n    serve", "needs: [dpo]\n    serve"))
    result = llmp("run", str(job), "--workdir", str(tmp_path / "w"), env={**os.environ, "COLUMNS": "250"})
    assert result.returncode == 0, result.stdout + result.stderr
    store = ArtifactStore.open(str(tmp_path / "w"))
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 5}
    for stage in ("pretrain", "sft", "dpo"):
        metrics = store.manifest(stage).meta["metrics"]
        assert f"loss={metrics['loss_start']:.4g}→{metrics['loss_end']:.4g}" in rows[stage]
        assert "val_loss=" in rows[stage]
    dpo = store.manifest("dpo").meta["metrics"]
    assert {"reward_accuracy", "reward_margin", "val_reward_accuracy", "val_reward_margin"} <= set(dpo)
    assert "reward_accuracy=" in rows["dpo"] and "reward_margin=" in rows["dpo"]
    log = [json.loads(line) for line in (store.fetch("dpo") / "model" / "train_log.jsonl").read_text().splitlines()]
    assert all({"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"} <= set(r) for r in log)
    assert "val_rewards/margins" in log[-1]
    eval_metrics = store.manifest("eval").meta["metrics"]
    assert 0 <= eval_metrics["stdlib_functions_acc"] <= 1 and "perplexity" in eval_metrics
    assert "stdlib_functions_acc=" in rows["eval"] and "perplexity=" in rows["eval"]
    assert "answer=" in rows["serve"]

    artifact_lines = result.stdout.split("Artifacts\n", 1)[1].splitlines()
    listed = {line.split()[-1] for line in artifact_lines if line.startswith("  ")}  # the paths, printed whole
    expected = ["model/", "model/loss_curve.png", "adapter/"]
    for stage, names in {"pretrain": expected[:2], "sft": expected, "dpo": expected, "eval": ["report/"]}.items():
        for name in names:
            path = Path(store.backend.local_path(f"{stage}/versions/{store.manifest(stage).version}/{name}"))
            assert f"  {stage}" in result.stdout and path.exists(), (stage, name)
            assert str(path) in listed, (stage, name)
    adapter = json.loads((store.fetch("dpo") / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(store.fetch("sft") / "model")  # the model DPO started from
