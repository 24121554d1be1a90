"""Metrics sinks: JSONL, TensorBoard event files, the Prometheus endpoint; MFU arithmetic."""

import json
import socket
import urllib.request

import pytest
import torch

from llm_platform.observability import training as names
from llm_platform.trainer.train.metrics import MetricsLog, expert_shares, mfu, peak_flops

RECORD = {
    "step": 10,
    "loss": 2.5,
    "lr": 1e-3,
    "grad_norm": 0.7,
    "tokens_per_s": 1000.0,
    "mfu": 0.42,
    "new_tokens": 4096,
    "expert_load": {1: [0.75, 0.25]},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mfu_is_model_flops_over_the_summed_peak():
    assert mfu(6e9, 1000.0, 1e15, devices=2) == pytest.approx(6e12 / 2e15)
    assert mfu(6e9, 1000.0, None, devices=1) is None


def test_peak_flops_comes_from_the_environment_or_is_unknown_on_cpu(monkeypatch):
    monkeypatch.delenv("LLMP_PEAK_FLOPS", raising=False)
    assert peak_flops(torch.device("cpu")) is None
    monkeypatch.setenv("LLMP_PEAK_FLOPS", "1e14")
    assert peak_flops(torch.device("cpu")) == 1e14


def test_expert_shares_are_fractions_of_each_layer():
    assert expert_shares({3: torch.tensor([30, 10, 0, 0])}) == {3: [0.75, 0.25, 0.0, 0.0]}


def test_jsonl_and_tensorboard_get_every_record(tmp_path):
    pytest.importorskip("tensorboardX")
    log = MetricsLog(tmp_path, tensorboard=True)
    log.write(RECORD)
    log.close()
    line = json.loads((tmp_path / "train_log.jsonl").read_text())
    assert line["loss"] == 2.5 and "new_tokens" not in line
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_prometheus_endpoint_serves_the_dashboard_names():
    port = free_port()
    log = MetricsLog(None, metrics_port=port, job="llama", stage="pretrain")
    log.write(RECORD)
    log.write({**RECORD, "step": 20})
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    labels = 'job="llama",stage="pretrain"'
    assert f"{names.LOSS}{{{labels}}} 2.5" in body
    assert f"{names.STEP}{{{labels}}} 20.0" in body
    assert f"{names.TOKENS}_total{{{labels}}} 8192.0" in body
    assert f'{names.EXPERT_LOAD}{{expert="0",job="llama",layer="1",stage="pretrain"}} 0.75' in body


def test_missing_optional_backends_say_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("no wandb")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(ImportError, match="train.wandb_project needs the 'wandb' package.*pip install wandb"):
        MetricsLog(None, wandb_project="p")
