"""Best-of-n sampling: n completions per prompt from the inference engine, each scored by a reward model, the best
one kept (rejection sampling, as in InstructGPT's and Llama 2's reward-model evaluations).

The engine samples the n completions of a prompt as one request (``SamplingParams.n``), so they share the prompt's
KV blocks; the reward model reads each prompt + completion as token ids, so it must share the engine model's
vocabulary (a reward model trained from the same base, as ``align.method: reward`` writes one).

    engine = LLMEngine.from_pretrained("sft/model")
    reward = load_reward_model("reward/model")
    [best] = best_of_n(engine, reward, ["How do I sort a list?"], SamplingParams(n=8, max_tokens=64, seed=0))
    best.best.text, best.rewards
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llm_platform.trainer.train.reward import RewardModel, score_sequences

from .engine import LLMEngine
from .outputs import CompletionOutput
from .params import InvalidRequest, SamplingParams


@dataclass(frozen=True)
class BestOfN:
    """One prompt's completions (in sampling order), their rewards, and which one won (the first of any tie)."""

    prompt_token_ids: list[int]
    completions: list[CompletionOutput]
    rewards: list[float]
    best_index: int

    @property
    def best(self) -> CompletionOutput:
        return self.completions[self.best_index]

    @property
    def best_reward(self) -> float:
        return self.rewards[self.best_index]


def response_tokens(completion: CompletionOutput, eos_token_ids: set[int]) -> list[int]:
    """The completion's ids without a final end-of-sequence token: a reward model reads the hidden state of the
    last response token, as `align.method: reward` trained it (its rows end where the eos is predicted)."""
    ids = completion.token_ids
    return ids[:-1] if ids and ids[-1] in eos_token_ids else list(ids)


def best_of_n(
    engine: LLMEngine,
    reward: RewardModel,
    prompts: Sequence[str | list[int]],
    params: SamplingParams,
    *,
    batch_size: int = 16,
) -> list[BestOfN]:
    """For each prompt, ``params.n`` sampled completions, their rewards and the best; in prompt order."""
    if not isinstance(params, SamplingParams):
        raise InvalidRequest("params", f"must be SamplingParams, got {type(params).__name__}")
    if params.n < 2:
        raise InvalidRequest("n", f"best-of-n needs n >= 2 completions per prompt to choose from, got {params.n}")
    outputs = engine.generate(list(prompts), params)
    rows = [out.prompt_token_ids + response_tokens(c, engine.eos_token_ids) for out in outputs for c in out.outputs]
    rewards = score_sequences(reward, rows, batch_size)
    results = []
    for i, out in enumerate(outputs):
        mine = rewards[i * params.n : (i + 1) * params.n]
        best = max(range(len(mine)), key=mine.__getitem__)
        results.append(BestOfN(list(out.prompt_token_ids), list(out.outputs), mine, best))
    return results
