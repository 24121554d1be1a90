"""Best-of-n through the engine, scored by a Bradley–Terry reward model trained on a separable preference set
(responses of 'good' tokens 20-39 preferred to 'bad' tokens 40-59): the chosen completions carry more reward, and more
of what the preference rewarded, than plain samples."""

from __future__ import annotations

import json

import pytest
import torch

from llm_platform.trainer.inference import EngineConfig, InvalidRequest, LLMEngine, SamplingParams
from llm_platform.trainer.inference.best_of_n import best_of_n
from llm_platform.trainer.train.reward import RewardLoss, RewardModel, pair_accuracy, score_sequences
from tests.trainer.train.test_reward import VOCAB, decoder, pairs

from .conftest import tiny_model

PROMPTS = [[1 + (i * 7) % 19, 1 + (i * 3) % 19, 1 + (i * 11) % 19] for i in range(12)]


@pytest.fixture(scope="module")
def reward() -> RewardModel:
    model = RewardModel(decoder())
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    objective = RewardLoss(model)
    for _ in range(3):
        for batch in pairs(12, seed=1):
            objective(batch).backward()
            optimizer.step()
            optimizer.zero_grad()
    assert pair_accuracy(model, pairs(4, seed=2)) > 0.9  # held out
    return model.eval()


def engine() -> LLMEngine:
    model = tiny_model(dim=32, n_layers=2, n_heads=4, num_kv_heads=4, ffn_dim=64, vocab_size=VOCAB, init_std=0.02)
    return LLMEngine(model, None, EngineConfig(num_blocks=64, max_num_seqs=32, seed=0))


def test_a_final_eos_is_not_scored():
    from llm_platform.trainer.inference import CompletionOutput
    from llm_platform.trainer.inference.best_of_n import response_tokens

    assert response_tokens(CompletionOutput(0, [5, 6, 2], "", "stop"), {2}) == [5, 6]
    assert response_tokens(CompletionOutput(0, [5, 6, 7], "", "length"), {2}) == [5, 6, 7]


def good_share(token_ids: list[int]) -> float:
    return sum(20 <= t < 40 for t in token_ids) / len(token_ids)


def test_best_of_n_raises_the_reward_and_the_preferred_content_of_the_chosen_samples(reward):
    params = SamplingParams(max_tokens=6, temperature=1.0, ignore_eos=True)  # the engine seed draws them all
    plain = engine().generate(PROMPTS, params)
    plain_rewards = score_sequences(reward, [o.prompt_token_ids + o.outputs[0].token_ids for o in plain])
    chosen = best_of_n(engine(), reward, PROMPTS, SamplingParams(**{**params.__dict__, "n": 8}))
    plain_mean = sum(plain_rewards) / len(plain_rewards)
    best_mean = sum(r.best_reward for r in chosen) / len(chosen)
    plain_good = sum(good_share(o.outputs[0].token_ids) for o in plain) / len(plain)
    best_good = sum(good_share(r.best.token_ids) for r in chosen) / len(chosen)
    print(f"mean reward {plain_mean:.3f} plain, {best_mean:.3f} best-of-8; good-token share {plain_good:.2f} -> "
          f"{best_good:.2f}")  # fmt: skip
    assert best_mean > plain_mean + 2.0
    assert best_good > plain_good + 0.2
    for r in chosen:
        assert len(r.completions) == 8 and r.best_reward == max(r.rewards)
        assert r.best_reward == pytest.approx(score_sequences(reward, [r.prompt_token_ids + r.best.token_ids])[0])


def test_bad_requests_are_named(reward):
    with pytest.raises(InvalidRequest, match="best-of-n needs n >= 2"):
        best_of_n(engine(), reward, PROMPTS[:1], SamplingParams(max_tokens=2))
    with pytest.raises(ValueError, match=r"rows\[1\]: token id 99 is outside the reward model's vocabulary \(64\)"):
        score_sequences(reward, [[1, 2], [3, 99]])


def test_llmp_eval_best_of_n_prints_the_best_completion_of_each_prompt(tmp_path):
    from typer.testing import CliRunner

    from llm_platform.cli import app
    from llm_platform.trainer.model.hf import save_pretrained
    from llm_platform.trainer.tokenizer import train_bpe
    from llm_platform.trainer.train.reward import save_reward_head

    tokenizer = train_bpe(["how do I sort a list", "use sorted or list.sort", "merge sort splits"] * 5, 280)
    policy = tiny_model(dim=32, n_layers=2, n_heads=4, num_kv_heads=4, ffn_dim=64, vocab_size=tokenizer.vocab_size)
    scorer = RewardModel(tiny_model(dim=32, n_layers=1, n_heads=4, num_kv_heads=4, ffn_dim=64,
                                    vocab_size=tokenizer.vocab_size))  # fmt: skip
    torch.nn.init.normal_(scorer.head.weight)
    for folder, model in ((tmp_path / "policy", policy), (tmp_path / "reward", scorer.decoder)):
        save_pretrained(model, folder)
        tokenizer.save(folder)
    save_reward_head(scorer, tmp_path / "reward")
    args = ["eval", "best-of-n", str(tmp_path / "policy"), str(tmp_path / "reward"), "-p", "how do I sort", "-p",
            "merge sort", "--n", "3", "--max-tokens", "5"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["prompt"] for line in lines] == ["how do I sort", "merge sort"]
    for line in lines:
        assert len(line["rewards"]) == 3 and line["reward"] == max(line["rewards"])
    missing = CliRunner().invoke(app, ["eval", "best-of-n", str(tmp_path / "policy"), str(tmp_path), "-p", "x"])
    assert missing.exit_code == 2 and "no reward_head.safetensors" in missing.output
