"""`launcher: ray` on a real local Ray cluster: Ray Train's TorchTrainer runs the pretrain stage on 2 CPU workers
(gloo), with checkpoints and the output through the store, and matches one process with the same global batch."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from llm_platform.storage import ArtifactStore
from llm_platform.trainer.stages import run_stage
from tests.trainer.train.fixtures import commit_tokens, pretrain_job

ray = pytest.importorskip("ray")
pytest.importorskip("ray.train.torch")

TRAIN = {
    "steps": 4,
    "seq_len": 32,
    "lr": 3e-3,
    "warmup_steps": 2,
    "precision": "fp32",
    "device": "cpu",
    "log_every": 1,
    "checkpoint_every": 2,
    "eval_batches": 2,
}


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def trained(tmp_path, name: str, train: dict):
    store = ArtifactStore.open(str(tmp_path / name))
    commit_tokens(store)
    manifest = run_stage(pretrain_job({**TRAIN, **train}), "pretrain", store)
    model_dir = store.fetch("pretrain") / "model"
    log = [json.loads(line) for line in (model_dir / "train_log.jsonl").read_text().splitlines()]
    return store, manifest, log, load_file(model_dir / "model.safetensors")


@pytest.mark.slow
def test_two_ray_train_workers_match_one_process(ray_cluster, tmp_path):
    ray_parallel = {"launcher": "ray", "nodes": 2, "gpus_per_node": 0}
    store, manifest, ray_log, ray_weights = trained(tmp_path, "ray", {"micro_batch": 2, "parallel": ray_parallel})
    _, _, one_log, one_weights = trained(tmp_path, "one", {"micro_batch": 4})

    assert [r["step"] for r in ray_log] == [1, 2, 3, 4]
    assert [r["loss"] for r in ray_log] == pytest.approx([r["loss"] for r in one_log], abs=1e-5)
    assert ray_weights.keys() == one_weights.keys()
    for name in one_weights:
        torch.testing.assert_close(ray_weights[name], one_weights[name], atol=1e-5, rtol=0, msg=name)
    # the workers checkpointed through the store, and the head committed the stage from rank 0's output
    checkpoints = [k.split("/", 3)[3] for k in store.keys("pretrain/checkpoints")]
    assert checkpoints == ["step_00000002/node_0", "step_00000004/node_0"]
    assert manifest.meta["metrics"]["steps"] == 4 and "val_loss" in manifest.meta["metrics"]
    assert store.keys("pretrain/ray-output") == []
