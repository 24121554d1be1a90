"""The loop in one process on CPU: learning, gradient accumulation, activation checkpointing, MoE, NaN stops."""

import json

import pytest
import torch

from llm_platform.storage import ArtifactStore
from llm_platform.trainer.data.loader import PretrainLoader
from llm_platform.trainer.model import get_config
from llm_platform.trainer.model.transformer import Transformer
from llm_platform.trainer.train.checkpoint import Checkpointer
from llm_platform.trainer.train.config import TrainConfig
from llm_platform.trainer.train.distributed import DistEnv
from llm_platform.trainer.train.loop import NonFiniteLossError, train
from llm_platform.trainer.train.loss import lm_loss
from llm_platform.trainer.train.metrics import MetricsLog

from .worker import SEQ_LEN, inject_nan_at, tiny_model


def fit(tokens, steps=6, micro_batch=4, grad_accum=1, model=None, val=None, **kw):
    config = TrainConfig(
        steps=steps,
        micro_batch=micro_batch,
        grad_accum=grad_accum,
        seq_len=SEQ_LEN,
        lr=3e-3,
        warmup_steps=2,
        precision="fp32",
        log_every=1,
        **{k: v for k, v in kw.items() if k not in ("checkpointer", "log")},
    )
    loader = PretrainLoader(tokens, SEQ_LEN, micro_batch, grad_accum, seed=0)
    return train(
        model or tiny_model(),
        config,
        loader,
        DistEnv(),
        val_tokens=val,
        checkpointer=kw.get("checkpointer"),
        log=kw.get("log"),
    )


def losses(result):
    return [r["loss"] for r in result.records]


def test_training_lowers_the_loss_and_logs_every_step(tokens, tmp_path):
    log = MetricsLog(tmp_path)
    result = fit(tokens, steps=30, val=tokens[-3000:], log=log, eval_batches=2)
    log.close()
    assert result.loss_end < result.loss_start - 0.5
    assert result.val_loss is not None and result.val_loss < result.loss_start
    lines = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 31))
    assert {"step", "loss", "lr", "grad_norm", "tokens_per_s"} <= set(lines[-1])
    assert result.metrics()["steps"] == 30 and result.tokens == 30 * 4 * SEQ_LEN


def test_gradient_accumulation_matches_one_big_micro_batch(tokens):
    big = losses(fit(tokens, micro_batch=4, grad_accum=1))
    assert losses(fit(tokens, micro_batch=2, grad_accum=2)) == pytest.approx(big, abs=1e-5)
    assert losses(fit(tokens, micro_batch=1, grad_accum=4)) == pytest.approx(big, abs=1e-5)


@pytest.mark.parametrize("mode", ["full", "selective"])
def test_activation_checkpointing_changes_memory_not_the_numbers(tokens, mode):
    assert losses(fit(tokens, activation_checkpointing=mode)) == pytest.approx(losses(fit(tokens)), abs=1e-6)


def test_moe_model_trains_with_its_aux_loss_and_reports_expert_load(tokens):
    torch.manual_seed(0)
    config = get_config("mixtral-tiny", vocab_size=384, dim=64, n_heads=4, num_kv_heads=2, ffn_dim=64, max_seq_len=64)
    result = fit(tokens, steps=4, model=Transformer(config))
    shares = result.records[-1]["expert_load"]
    assert set(shares) == {0, 1}
    for layer_shares in shares.values():
        assert len(layer_shares) == 4 and sum(layer_shares) == pytest.approx(1.0, abs=1e-3)
    assert all(torch.isfinite(torch.tensor(losses(result))))


def test_nan_stops_training_and_leaves_the_last_good_checkpoint(tokens, tmp_path):
    store = ArtifactStore.open(str(tmp_path / "store"))
    checkpointer = Checkpointer(store, "run/ckpt", DistEnv(), tmp_path / "staging", keep=2)
    model = tiny_model()
    inject_nan_at(model, step=5, grad_accum=1)
    with pytest.raises(NonFiniteLossError, match="step 5: loss nan"):
        fit(tokens, steps=8, model=model, checkpoint_every=2, checkpointer=checkpointer)
    assert store.read_json("run/ckpt/latest") == {"step": 4, "nodes": 1}
    # The good checkpoint continues exactly like a run that never saw the NaN.
    reference = losses(fit(tokens, steps=8))
    resumed = fit(tokens, steps=8, checkpointer=Checkpointer(store, "run/ckpt", DistEnv(), tmp_path / "staging"))
    assert resumed.resumed_from == 4
    assert losses(resumed) == reference[4:]


def test_fp8_without_an_fp8_gpu_is_refused_with_the_reason(tokens):
    with pytest.raises(RuntimeError, match="train.fp8 needs a GPU with FP8 tensor cores"):
        fit(tokens, steps=1, fp8=True)


class MaskedBatches:
    """A fine-tuning style loader: dict micro-batches whose labels score only the second half of each sequence."""

    def __init__(self, tokens):
        self.windows = PretrainLoader(tokens, SEQ_LEN, micro_batch=4, seed=0)

    def next_step(self):
        (ids,) = self.windows.next_step()
        labels = ids[:, 1:].clone()
        labels[:, : SEQ_LEN // 2] = -100
        return [{"input_ids": ids[:, :-1], "labels": labels}]

    def state_dict(self):
        return self.windows.state_dict()

    def load_state_dict(self, state):
        self.windows.load_state_dict(state)


def test_dict_batches_with_masked_labels_train_on_the_scored_tokens_only(tokens):
    (first,) = MaskedBatches(tokens).next_step()
    with torch.no_grad():
        expected = lm_loss(tiny_model()(first["input_ids"]), first["labels"]).item()  # before any update
    config = TrainConfig(steps=3, micro_batch=4, seq_len=SEQ_LEN, lr=3e-3, warmup_steps=1, precision="fp32")
    masked = train(tiny_model(), config, MaskedBatches(tokens), DistEnv())
    assert [r["step"] for r in masked.records] == [3]  # log_every 10: the last step only
    assert masked.loss_start == pytest.approx(expected, abs=1e-6)
