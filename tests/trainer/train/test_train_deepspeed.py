"""`strategy: deepspeed` (ZeRO 1/2/3): the config it builds, the error without deepspeed, and the loss of our own
single-process loop with the same global batch, on CPU (gloo, 1 and 2 real processes) and on one GPU.

The GPU test imports nothing of llm_platform.api (the device has no pydantic): run it there with
`python3 -m pytest --noconftest tests/trainer/train/test_train_deepspeed.py -k gpu -s`.
"""

import importlib.util
import json
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from llm_platform.trainer.train.config import ParallelConfig, TrainConfig
from llm_platform.trainer.train.deepspeed_backend import deepspeed_config, import_deepspeed
from llm_platform.trainer.train.precision import Precision

from .launch import logged_losses, run_worker

HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None
needs_deepspeed = pytest.mark.skipif(not HAS_DEEPSPEED, reason="deepspeed is not installed (pip install deepspeed)")
STEPS = 6


def _config(**kwargs) -> TrainConfig:
    parallel = ParallelConfig(strategy="deepspeed", zero_stage=kwargs.pop("zero_stage", 2))
    return TrainConfig(steps=1, parallel=parallel, **kwargs)


def test_config_carries_batch_accumulation_clipping_precision_and_stage():
    config = _config(micro_batch=3, grad_accum=4, grad_clip=0.5, zero_stage=3)
    ds = deepspeed_config(config, Precision("bf16", "cuda"))
    assert ds["train_micro_batch_size_per_gpu"] == 3
    assert ds["gradient_accumulation_steps"] == 4
    assert ds["gradient_clipping"] == 0.5
    assert ds["bf16"]["enabled"] and not ds["fp16"]["enabled"]
    assert ds["zero_optimization"] == {"stage": 3}


def test_fp32_enables_neither_half_precision():
    ds = deepspeed_config(_config(), Precision("fp32", "cpu"))
    assert not ds["bf16"]["enabled"] and not ds["fp16"]["enabled"]


def test_unknown_zero_stage_names_the_field():
    with pytest.raises(ValueError, match="train.parallel.zero_stage"):
        deepspeed_config(_config(zero_stage=4), Precision("fp32", "cpu"))


def test_8bit_adamw_is_refused_with_what_to_use_instead():
    with pytest.raises(ValueError, match="optimizer: adamw"):
        deepspeed_config(_config(optimizer="adamw8bit"), Precision("fp32", "cpu"))


def test_missing_deepspeed_says_how_to_install_it_and_suggests_fsdp(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # what Python does for a package that is not there
    with pytest.raises(ImportError, match=r"pip install 'llm-platform\[gpu\]'.*strategy: fsdp"):
        import_deepspeed()


# ------------------------------------------------------------------------------------------- CPU, real processes
@pytest.fixture(scope="module")
def single(token_file, tmp_path_factory):
    """Our own loop in one process: the losses and the exported weights."""
    out = tmp_path_factory.mktemp("single")
    run_worker(token_file, out, 1, "--micro-batch", "4", "--steps", str(STEPS), "--export", str(out / "model"))
    return logged_losses(out), load_file(out / "model" / "model.safetensors")


@pytest.mark.slow
@needs_deepspeed
@pytest.mark.parametrize(("stage", "nproc", "accum"), [(2, 1, 2), (2, 2, 1), (3, 2, 1)])
def test_zero_matches_the_single_process_loss_with_the_same_global_batch(
    stage, nproc, accum, token_file, tmp_path, single
):
    losses, weights = single
    micro = str(4 // nproc // accum)
    args = ["--strategy", "deepspeed", "--zero-stage", str(stage), "--micro-batch", micro, "--grad-accum", str(accum)]
    run_worker(token_file, tmp_path, nproc, *args, "--steps", str(STEPS), "--export", str(tmp_path / "model"))
    ours = logged_losses(tmp_path)
    assert list(ours) == list(range(1, STEPS + 1))
    for step, loss in losses.items():
        assert ours[step] == pytest.approx(loss, abs=1e-5), f"step {step}"
    exported = load_file(tmp_path / "model" / "model.safetensors")  # ZeRO-3: gathered from the partitions
    assert exported.keys() == weights.keys()
    for name, tensor in weights.items():
        torch.testing.assert_close(exported[name], tensor, atol=1e-4, rtol=0, msg=name)


@pytest.mark.slow
@needs_deepspeed
def test_zero3_resumes_from_its_checkpoint_in_the_store_and_continues_the_loss_sequence(token_file, tmp_path, single):
    store = tmp_path / "store"
    args = ["--strategy", "deepspeed", "--zero-stage", "3", "--micro-batch", "2", "--steps", str(STEPS)]
    args += ["--store", str(store), "--checkpoint-every", "2"]
    run_worker(token_file, tmp_path, 2, *args, "--stop-after", "3")  # exits as if preempted during step 4
    assert max(logged_losses(tmp_path)) == 3
    run_worker(token_file, tmp_path, 2, *args)
    assert json.loads((tmp_path / "result.json").read_text()) == {"resumed_from": 2}
    combined = logged_losses(tmp_path)
    assert list(combined) == list(range(1, STEPS + 1))
    for step, loss in single[0].items():
        assert combined[step] == pytest.approx(loss, abs=1e-5), f"step {step}"


# ------------------------------------------------------------------------------------------- one GPU
# fp32: the same arithmetic up to reduction order (ZeRO-3 differed by 4.8e-7 on an H200, ZeRO-1/2 by 0).
# bf16: our loop keeps fp32 weights under autocast, DeepSpeed's bf16 casts the weights and buffers (RoPE table) to
# bf16 and keeps the fp32 master copy in the optimizer; matmuls run in bf16 either way, so the difference is the
# rounding of the other weights and activations (seen: 3.0e-4 on an H200, every stage); 2e-3 leaves room for that
# rounding. The fp32 case is the sharp check of the engine's semantics.
GPU_TOLERANCE = {"fp32": 1e-5, "bf16": 2e-3}


def _gpu_losses(strategy: str, stage: int, precision: str) -> list[float]:
    from llm_platform.trainer.data.loader import PretrainLoader
    from llm_platform.trainer.train.distributed import setup_distributed
    from llm_platform.trainer.train.loop import train

    from .worker import SEQ_LEN, VOCAB, tiny_model

    env = setup_distributed("cuda")
    tokens = np.random.default_rng(0).integers(0, VOCAB, 50_000).astype(np.uint16)
    config = TrainConfig(
        steps=STEPS,
        micro_batch=4,
        grad_accum=2,
        seq_len=SEQ_LEN,
        lr=3e-3,
        warmup_steps=2,
        precision=precision,
        log_every=1,
        device="cuda",
        parallel=ParallelConfig(strategy=strategy, zero_stage=stage),
    )
    loader = PretrainLoader(tokens, SEQ_LEN, 4, 2, env.rank, env.world_size, seed=0, device=env.device)
    result = train(tiny_model(), config, loader, env)
    return [r["loss"] for r in result.records]


@pytest.mark.slow
@needs_deepspeed
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_gpu_zero_1_2_3_match_single(precision):
    reference = _gpu_losses("auto", 2, precision)
    print(f"\n{precision} single      " + " ".join(f"{x:.6f}" for x in reference))
    worst = {}
    for stage in (1, 2, 3):
        losses = _gpu_losses("deepspeed", stage, precision)
        worst[stage] = max(abs(a - b) for a, b in zip(losses, reference, strict=True))
        print(
            f"{precision} ZeRO-{stage}      "
            + " ".join(f"{x:.6f}" for x in losses)
            + f"  max |diff| {worst[stage]:.2e}"
        )
    assert all(diff <= GPU_TOLERANCE[precision] for diff in worst.values()), worst
