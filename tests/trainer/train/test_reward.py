"""The Bradley–Terry reward model: exact first loss, padding-independence, and > 90% held-out accuracy on a
separable preference set."""

from __future__ import annotations

import math

import pytest
import torch

from llm_platform.trainer.model import get_config
from llm_platform.trainer.model.transformer import Transformer
from llm_platform.trainer.train.reward import (
    RewardLoss,
    RewardModel,
    bradley_terry_loss,
    pair_accuracy,
    score_sequences,
)

VOCAB = 64


def decoder() -> Transformer:
    torch.manual_seed(0)
    model = Transformer(get_config("llama-tiny", dim=32, n_layers=2, n_heads=4, ffn_dim=64, vocab_size=VOCAB))
    model.init_weights(seed=0)
    return model


def pairs(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Batches of 8 pairs (chosen rows first): a random prompt, then a response of 'good' tokens (chosen) or 'bad'
    tokens (rejected), of random lengths, right-padded with 0."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        rows = []
        for kind in ("good", "bad"):
            for _ in range(8):
                prompt = torch.randint(1, 20, (int(torch.randint(3, 8, (1,), generator=g)),), generator=g)
                low = 20 if kind == "good" else 40
                response = torch.randint(low, low + 20, (int(torch.randint(2, 6, (1,), generator=g)),), generator=g)
                rows.append(torch.cat([prompt, response]))
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, : len(r)], mask[i, : len(r)] = r, 1
        batches.append({"input_ids": ids, "attention_mask": mask})
    return batches


def test_first_loss_is_log_2_and_padding_changes_no_reward():
    reward = RewardModel(decoder())
    batch = pairs(1, seed=0)[0]
    assert RewardLoss(reward)(batch).item() == torch.tensor(math.log(2), dtype=torch.float32).item()  # fp32 log 2
    with torch.no_grad():
        reward.head.weight.normal_()
    scores = reward.score(batch["input_ids"], batch["attention_mask"])
    one = batch["attention_mask"][0].sum()
    alone = reward.score(batch["input_ids"][:1, :one])
    torch.testing.assert_close(alone, scores[:1], atol=1e-5, rtol=1e-5)
    loss, accuracy = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0]))
    assert accuracy == 0.5 and loss.item() == (-torch.nn.functional.logsigmoid(torch.tensor([2.0, -1.0]))).mean()


def test_it_learns_a_separable_preference_and_ranks_held_out_pairs():
    reward = RewardModel(decoder())
    train, held_out = pairs(12, seed=1), pairs(4, seed=2)
    before = pair_accuracy(reward, held_out)
    optimizer = torch.optim.AdamW(reward.parameters(), lr=3e-3)
    objective = RewardLoss(reward)
    for _ in range(3):
        for batch in train:
            objective(batch).backward()
            optimizer.step()
            optimizer.zero_grad()
    accuracy = pair_accuracy(reward, held_out)
    print(f"held-out pair accuracy: {before:.2f} before, {accuracy:.2f} after")
    assert accuracy > 0.9


def test_scoring_names_the_token_id_that_is_outside_the_vocabulary():
    reward = RewardModel(decoder())
    with pytest.raises(ValueError, match=r"rows\[0\]: token id -1 is outside the reward model's vocabulary"):
        score_sequences(reward, [[3, -1, 5]])
