"""DPO's pieces against closed-form values: the loss, its gradient, the summed log-probabilities, and log 2 at the
start (policy = reference)."""

from __future__ import annotations

import math

import pytest
import torch

from llm_platform.trainer.data.batching import Example
from llm_platform.trainer.data.preference import PreferencePair, attach_reference, collate_pairs
from llm_platform.trainer.data.sft import shifted
from llm_platform.trainer.model import Transformer, get_config
from llm_platform.trainer.train.dpo import DPOLoss, dpo_loss, reference_logps, reward_sums, sequence_logps


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize(
    ("chosen", "rejected", "ref_chosen", "ref_rejected", "beta"),
    [(-10.0, -12.0, -11.0, -11.0, 0.5), (-3.0, -2.0, -3.5, -1.0, 0.1), (-7.0, -7.0, -7.0, -7.0, 1.0)],
)
def test_loss_and_gradient_match_the_closed_form(chosen, rejected, ref_chosen, ref_rejected, beta):
    policy = torch.tensor([chosen, rejected], dtype=torch.float64, requires_grad=True)
    loss, margins = dpo_loss(policy[:1], policy[1:], torch.tensor([ref_chosen]), torch.tensor([ref_rejected]), beta)
    margin = beta * ((chosen - ref_chosen) - (rejected - ref_rejected))
    assert margins.item() == pytest.approx(margin, abs=1e-12)
    assert loss.item() == pytest.approx(-math.log(sigmoid(margin)), abs=1e-12)
    loss.backward()
    # d/d(chosen) of -log sigmoid(m) = -beta * sigmoid(-m); the rejected log-prob gets the opposite
    assert policy.grad.tolist() == pytest.approx([-beta * sigmoid(-margin), beta * sigmoid(-margin)], abs=1e-12)


def test_sequence_logps_sums_the_scored_tokens_only():
    logits = torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[3, -100, 1, 6, -100], [-100, -100, 0, 2, 5]])
    expected = []
    for row in range(2):
        total = 0.0
        for t in range(5):
            if labels[row, t] != -100:
                total += torch.log_softmax(logits[row, t].double(), -1)[labels[row, t]].item()
        expected.append(total)
    assert sequence_logps(logits, labels).tolist() == pytest.approx(expected, abs=1e-5)


def test_the_first_step_loss_is_log_2_when_the_policy_is_the_reference():
    model = Transformer(get_config("llama-tiny", dim=32, n_layers=2, n_heads=4, num_kv_heads=2, vocab_size=50))
    gen = torch.Generator().manual_seed(1)

    def example(n: int, prompt: int) -> Example:
        return Example(torch.randint(1, 50, (n,), generator=gen).tolist(), [False] * prompt + [True] * (n - prompt))

    pairs = [PreferencePair(example(9, 4), example(12, 4)) for _ in range(3)]
    attach_reference(pairs, lambda ids, labels: reference_logps(model, ids, labels), 0, 2, "cpu")
    batch = shifted(collate_pairs(pairs, pad_id=0), torch.device("cpu"))
    assert batch["input_ids"].shape[0] == 6 and batch["reference_logps"].shape == (6,)
    loss = DPOLoss(model, beta=0.1)(batch)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-5)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_reward_sums_match_the_closed_form():
    sums = reward_sums(
        torch.tensor([-10.0, -3.0]), torch.tensor([-12.0, -2.0]), torch.tensor([-11.0, -3.5]),
        torch.tensor([-11.0, -1.0]), beta=0.5,
    )  # fmt: skip
    # rewards: chosen 0.5 * (-10 + 11) = 0.5 and 0.5 * (-3 + 3.5) = 0.25; rejected -0.5 and 0.5 * (-2 + 1) = -0.5
    assert sums.tolist() == pytest.approx([0.75, -1.0, 2.0, 1.75])


def test_dpo_loss_reports_the_mean_rewards_of_the_pairs_it_saw_apart_for_training_and_validation():
    model = Transformer(get_config("llama-tiny", dim=32, n_layers=2, n_heads=4, num_kv_heads=2, vocab_size=50))
    gen = torch.Generator().manual_seed(2)
    pairs = [
        PreferencePair(Example(torch.randint(1, 50, (8,), generator=gen).tolist(), [False] * 3 + [True] * 5),
                       Example(torch.randint(1, 50, (6,), generator=gen).tolist(), [False] * 3 + [True] * 3),
                       reference=(-20.0 - i, -18.0 + i))
        for i in range(4)
    ]  # fmt: skip
    objective = DPOLoss(model, beta=0.2)
    batches = [shifted(collate_pairs(pairs[:3], 0), torch.device("cpu")), shifted(collate_pairs(pairs[3:], 0), "cpu")]
    for batch in batches:
        objective(batch)
    chosen, rejected = [], []
    for batch in batches:
        logps = sequence_logps(model(batch["input_ids"]), batch["labels"]).detach()
        c, r = logps.chunk(2)
        rc, rr = batch["reference_logps"].chunk(2)
        chosen += (0.2 * (c - rc)).tolist()
        rejected += (0.2 * (r - rr)).tolist()
    expected = {
        "rewards/chosen": sum(chosen) / 4,
        "rewards/rejected": sum(rejected) / 4,
        "rewards/accuracies": sum(c > r for c, r in zip(chosen, rejected, strict=True)) / 4,
        "rewards/margins": sum(c - r for c, r in zip(chosen, rejected, strict=True)) / 4,
    }
    assert objective.take_rewards("train") == pytest.approx(expected, abs=1e-5)
    assert objective.take_rewards("train") == {}  # taken: the next record starts over
    objective.eval()
    with torch.no_grad():
        objective(batches[1])
    assert objective.take_rewards("val")["rewards/margins"] == pytest.approx(chosen[3] - rejected[3], abs=1e-5)
    assert objective.take_rewards("train") == {}
