"""Checkpoints through the artifact store: exact resume after SIGKILL, resharding to another world size on a real
S3 server, background saves and keep-last-N, falling back past a corrupt checkpoint, no code run from a pickle."""

import json
import logging
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from torch.distributed.checkpoint.api import CheckpointException

from llm_platform.storage import ArtifactStore, StoreError
from llm_platform.trainer.data.loader import PretrainLoader
from llm_platform.trainer.train.checkpoint import TRAIN_STATE, Checkpointer
from llm_platform.trainer.train.config import TrainConfig
from llm_platform.trainer.train.distributed import DistEnv
from llm_platform.trainer.train.loop import train

from .launch import REPO, logged_losses, run_worker, worker_command, worker_env
from .worker import SEQ_LEN, tiny_model

STEPS = 16


@pytest.fixture(scope="module")
def reference(token_file, tmp_path_factory):
    """Losses of an uninterrupted single-process run."""
    out = tmp_path_factory.mktemp("reference")
    run_worker(token_file, out, 1, "--steps", str(STEPS))
    return logged_losses(out)


@pytest.mark.slow
def test_sigkill_at_a_random_step_then_restart_continues_the_loss_sequence_exactly(token_file, tmp_path, reference):
    store, out = tmp_path / "store", tmp_path / "out"
    args = ["--steps", str(STEPS), "--store", str(store), "--checkpoint-every", "3"]
    kill_after = random.Random().randint(4, STEPS - 2)
    proc = subprocess.Popen(
        worker_command(token_file, out, 1, *args, "--step-delay", "0.3"),
        cwd=REPO,
        env=worker_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = out / "train_log.jsonl"
    deadline = time.monotonic() + 120
    while not (log.exists() and len(log.read_text().splitlines()) >= kill_after):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = logged_losses(out)
    assert max(killed) < STEPS, f"killed after step {kill_after}"

    run_worker(token_file, out, 1, *args)
    resumed_from = ArtifactStore.open(str(store)).read_json("run/checkpoints/latest")
    assert resumed_from == {"step": STEPS, "nodes": 1}
    combined = logged_losses(out)  # the killed run's lines, overwritten by the resumed run's from its checkpoint
    assert list(combined) == list(range(1, STEPS + 1))
    assert combined == reference  # bit for bit


@pytest.mark.slow
def test_fsdp_checkpoint_on_s3_resumes_in_one_process(token_file, tmp_path, reference, s3_bucket):
    uri = f"s3://{s3_bucket}/job"
    common = ["--steps", str(STEPS), "--store", uri, "--checkpoint-every", "3"]
    run_worker(token_file, tmp_path, 2, *common, "--strategy", "fsdp", "--micro-batch", "2", "--stop-after", "7")
    store = ArtifactStore.open(uri)
    assert store.read_json("run/checkpoints/latest") == {"step": 6, "nodes": 1}
    files = store.manifest("run/checkpoints/step_00000006/node_0").files
    assert {"__0_0.distcp", "__1_0.distcp", ".metadata", "train_state.json", "rng_rank1.json"} <= set(files)

    run_worker(token_file, tmp_path, 1, *common[:-1], "0", "--micro-batch", "4")  # no checkpoints but the last
    losses = logged_losses(tmp_path)
    for step in range(1, STEPS + 1):
        assert losses[step] == pytest.approx(reference[step], abs=1e-5), f"step {step}"


def _fit(tokens, store, tmp_path, steps, **kw):
    config = TrainConfig(
        steps=steps,
        micro_batch=4,
        seq_len=SEQ_LEN,
        lr=3e-3,
        warmup_steps=2,
        precision="fp32",
        log_every=1,
        checkpoint_every=2,
        **kw,
    )
    ckpt = Checkpointer(store, "run/ckpt", DistEnv(), tmp_path / "staging", keep=2, async_save=config.async_checkpoint)
    return train(tiny_model(), config, PretrainLoader(tokens, SEQ_LEN, 4), DistEnv(), checkpointer=ckpt)


def test_async_saves_publish_in_order_and_keep_the_newest_two(tokens, tmp_path):
    store = ArtifactStore.open(str(tmp_path / "store"))
    first = _fit(tokens, store, tmp_path, steps=8, async_checkpoint=True)
    assert store.read_json("run/ckpt/latest") == {"step": 8, "nodes": 1}
    assert [k.rsplit("/", 2)[1] for k in store.keys("run/ckpt")] == ["step_00000006", "step_00000008"]
    assert not (tmp_path / "staging" / "step_00000008").exists()
    again = _fit(tokens, store, tmp_path, steps=8, async_checkpoint=True)
    assert again.resumed_from == 8 and again.records == []
    assert again.loss_start == first.loss_start and again.loss_end == first.loss_end


def test_a_fresh_key_starts_from_scratch(tokens, tmp_path):
    result = _fit(tokens, ArtifactStore.open(str(tmp_path / "store")), tmp_path, steps=2)
    assert result.resumed_from is None and [r["step"] for r in result.records] == [1, 2]


def _node_file(store, step: int, suffix: str) -> tuple[str, Path]:
    """(name, local path) of the first file of checkpoint `step` whose name ends with `suffix`."""
    key = f"run/ckpt/step_{step:08d}/node_0"
    manifest = store.manifest(key)
    name = next(n for n in sorted(manifest.files) if n.endswith(suffix))
    return name, store.backend.local_path(f"{key}/versions/{manifest.version}/{name}")


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(0, len(data), max(1, len(data) // 50)):
        data[i] ^= 0xFF
    time.sleep(0.05)  # a clock tick after the commit that recorded the file's times (they are coarse)
    path.write_bytes(bytes(data))


def test_a_corrupt_checkpoint_is_skipped_for_the_previous_one(tokens, tmp_path, caplog):
    store = ArtifactStore.open(str(tmp_path / "store"))
    first = _fit(tokens, store, tmp_path, steps=8)  # keeps the checkpoints of steps 6 and 8
    name, path = _node_file(store, 8, ".distcp")
    _flip_bytes(path)
    with caplog.at_level(logging.WARNING, logger="llm_platform.trainer.train.checkpoint"):
        again = _fit(tokens, store, tmp_path, steps=8)
    assert again.resumed_from == 6
    assert "checkpoint step 8 of run/ckpt is unusable" in caplog.text and f"file '{name}'" in caplog.text
    losses = {r["step"]: r["loss"] for r in first.records}
    assert {r["step"]: r["loss"] for r in again.records} == {7: losses[7], 8: losses[8]}  # exact from step 6


def test_when_every_checkpoint_is_corrupt_resuming_is_an_error_naming_them(tokens, tmp_path):
    store = ArtifactStore.open(str(tmp_path / "store"))
    _fit(tokens, store, tmp_path, steps=4)  # checkpoints of steps 2 and 4
    for step in (2, 4):
        _flip_bytes(_node_file(store, step, TRAIN_STATE)[1])
    with pytest.raises(StoreError, match="no usable checkpoint under run/ckpt: step 4: .*; step 2: .*train_state.json"):
        _fit(tokens, store, tmp_path, steps=4)


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_index_that_would_run_code_is_refused(tokens, tmp_path):
    """Even with a manifest that matches (someone who can write the store), DCP's pickled index cannot run code."""
    store = ArtifactStore.open(str(tmp_path / "store"))
    _fit(tokens, store, tmp_path, steps=2)
    key = "run/ckpt/step_00000002/node_0"
    altered = tmp_path / "altered"
    shutil.copytree(store.fetch(key), altered)
    marker = tmp_path / "code-ran"
    (altered / ".metadata").write_bytes(pickle.dumps(_Payload(marker)))
    store.commit(key, altered, store.manifest(key).meta)
    with pytest.raises(CheckpointException, match="refers to io.open, which a DCP index never holds"):
        _fit(tokens, store, tmp_path, steps=2)
    assert not marker.exists()
    rng = json.loads((store.fetch(key) / "rng_rank0.json").read_text())  # the RNG state is JSON, not a pickle
    assert set(rng) == {"python", "numpy", "torch"}


TWO_RANKS = """
import json, sys, time
from pathlib import Path
import torch, torch.distributed as dist
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.train.backend import DCPState
from llm_platform.trainer.train.checkpoint import Checkpointer
from llm_platform.trainer.train.distributed import DistEnv

dist.init_process_group("gloo")
rank = dist.get_rank()
env = DistEnv(rank=rank, world_size=2, local_rank=rank, local_world_size=2)
store = ArtifactStore.open(sys.argv[1])
model = torch.nn.Linear(4, 4)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
checkpointer = Checkpointer(store, "run/ckpt", env, Path(sys.argv[2]), keep=2)
for step in (1, 2):
    with torch.no_grad():
        model.weight.fill_(step)
    checkpointer.save(step, DCPState(model, optimizer), {"step": step})
if rank == 0:  # corrupt step 2's first shard, as a bad disk would
    manifest = store.manifest("run/ckpt/step_00000002/node_0")
    name = sorted(n for n in manifest.files if n.endswith(".distcp"))[0]
    path = store.backend.local_path(f"run/ckpt/step_00000002/node_0/versions/{manifest.version}/{name}")
    time.sleep(0.05)  # a clock tick after the commit that recorded the file's times (they are coarse)
    path.write_bytes(bytes(b ^ 0xFF for b in path.read_bytes()))
dist.barrier()
state = checkpointer.restore(DCPState(model, optimizer))
result = {"rank": rank, "step": state["step"], "weight": model.weight[0, 0].item()}
(Path(sys.argv[2]) / f"result_{rank}.json").write_text(json.dumps(result))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_every_rank_skips_a_corrupt_checkpoint_together(tmp_path):
    script = tmp_path / "two_ranks.py"
    script.write_text(TWO_RANKS)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script)]
    proc = subprocess.run(
        [*cmd, str(tmp_path / "store"), str(tmp_path / "staging")],
        cwd=REPO,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads((tmp_path / "staging" / f"result_{rank}.json").read_text()) for rank in (0, 1)]
    assert results == [
        {"rank": 0, "step": 1, "weight": 1.0},
        {"rank": 1, "step": 1, "weight": 1.0},
    ]


def test_an_unreadable_latest_pointer_falls_back_to_the_newest_complete_checkpoint(tokens, tmp_path, caplog):
    store = ArtifactStore.open(str(tmp_path / "store"))
    _fit(tokens, store, tmp_path, steps=4)
    store.backend.put_bytes("run/ckpt/latest", b'{"step": 4, "nod')  # torn or altered
    with caplog.at_level(logging.WARNING, logger="llm_platform.trainer.train.checkpoint"):
        again = _fit(tokens, store, tmp_path, steps=4)
    assert again.resumed_from == 4 and "latest pointer of run/ckpt is unreadable" in caplog.text
