"""A reward model: a Bradley–Terry head on the decoder's final hidden state, trained on preference pairs.

Bradley–Terry models the chance that a person prefers response c over r as sigmoid(r(c) - r(r)), so training
minimises -log sigmoid(reward(chosen) - reward(rejected)) (as InstructGPT's reward model does). The reward of a
sequence is a linear map of the final-norm hidden state at its last real token: the one position that has read the
whole prompt and response. The head is initialised at zero, so every reward starts at 0 and the first loss is
exactly log 2.

    reward = RewardModel(load_pretrained("sft/model"))
    loss = RewardLoss(reward)(batch)          # batch: chosen rows then rejected rows ([2B, T]), attention_mask
    scores = reward.score(input_ids, attention_mask)     # [B] floats, no gradient
    score_responses(reward, tokenizer, [("How do I ...?", "You ...")])   # [floats], tokenized as training saw them
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from .loss import IGNORE_INDEX

HEAD_FILE = "reward_head.safetensors"


class RewardModel(nn.Module):
    """A decoder (anything with ``hidden_states(input_ids)`` and ``config.dim``) plus a scalar head."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder
        self.config = decoder.config  # what the engine reads (FLOPs per token)
        weight = next(decoder.parameters())
        self.head = nn.Linear(decoder.config.dim, 1, device=weight.device, dtype=torch.float32)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Rewards [B] of right-padded rows [B, T]; attention_mask marks the real tokens (1)."""
        hidden = self.decoder.hidden_states(input_ids)  # (B, T, dim)
        last = attention_mask.long().sum(dim=1).clamp(min=1) - 1
        final = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, dim)
        return self.head(final.float()).squeeze(-1)

    @torch.no_grad()
    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Rewards [B] for scoring (eval mode for the call, no gradient); no mask: every token is real."""
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        was_training = self.training
        self.eval()
        try:
            return self(input_ids, mask)
        finally:
            self.train(was_training)


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean -log sigmoid(chosen - rejected), share of pairs where chosen scores higher)."""
    margin = chosen - rejected
    return -F.logsigmoid(margin).mean(), (margin > 0).float().mean()


def scored_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The rows' real tokens: ``attention_mask`` when the batch has one; for the engine's shifted batches (inputs
    and next-token ``labels``), everything up to the last scored label, i.e. the input that predicts the response's
    last token."""
    if "attention_mask" in batch:
        return batch["attention_mask"]
    scored = batch["labels"] != IGNORE_INDEX
    positions = torch.arange(scored.shape[1], device=scored.device)
    last = torch.where(scored, positions, -1).amax(dim=1, keepdim=True)
    return (positions <= last).long()


class RewardLoss(nn.Module):
    """The engine's objective for reward modelling: a batch holds the chosen rows then the rejected rows ([2B, T]
    ``input_ids``, with ``attention_mask`` or ``labels`` as ``scored_mask`` reads them); one forward for both."""

    def __init__(self, reward: RewardModel) -> None:
        super().__init__()
        self.reward = reward

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        chosen, rejected = self.reward(batch["input_ids"], scored_mask(batch)).chunk(2)
        loss, _ = bradley_terry_loss(chosen, rejected)
        return loss


@torch.no_grad()
def pair_accuracy(reward: RewardModel, batches: list[dict[str, torch.Tensor]]) -> float:
    """Share of held-out pairs whose chosen response gets the higher reward."""
    right = total = 0
    for batch in batches:
        chosen, rejected = reward.score(batch["input_ids"], scored_mask(batch)).chunk(2)
        right += int((chosen > rejected).sum())
        total += chosen.numel()
    if total == 0:
        raise ValueError("pair_accuracy: no held-out pairs")
    return right / total


def save_reward_head(reward: RewardModel, folder: Path) -> None:
    """The head beside the decoder's files (``folder`` holds the decoder in Hugging Face format)."""
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in reward.head.state_dict().items()}
    save_file(tensors, str(folder / HEAD_FILE), metadata={"format": "pt"})


def load_reward_model(folder: str | Path) -> RewardModel:
    """A reward model a `align.method: reward` stage wrote (its `model/` folder), ready to ``score``."""
    from llm_platform.trainer.model.hf import load_pretrained

    folder = Path(folder)
    if not (folder / HEAD_FILE).is_file():
        raise FileNotFoundError(f"{folder}: no {HEAD_FILE}; expected the model/ folder of an align stage with "
                                "method: reward")  # fmt: skip
    reward = RewardModel(load_pretrained(folder))
    reward.head.load_state_dict(load_file(str(folder / HEAD_FILE)))
    return reward.eval()


def pad_rows(rows: Sequence[Sequence[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids [B, T] and the attention mask marking the real tokens, as ``RewardModel`` reads them."""
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids.to(device), mask.to(device)


def score_sequences(reward: RewardModel, rows: Sequence[Sequence[int]], batch_size: int = 16) -> list[float]:
    """The reward of each token sequence (prompt + response), scored in batches of ``batch_size`` rows."""
    vocab, limit = reward.config.vocab_size, reward.config.max_seq_len
    for i, row in enumerate(rows):
        if not row:
            raise ValueError(f"rows[{i}]: empty; a reward needs at least one token")
        bad = next((t for t in row if not 0 <= t < vocab), None)
        if bad is not None:
            raise ValueError(
                f"rows[{i}]: token id {bad} is outside the reward model's vocabulary ({vocab}); score with a "
                "reward model trained from the same base as the policy"
            )
        if len(row) > limit:
            raise ValueError(
                f"rows[{i}]: {len(row)} tokens exceed the reward model's context ({limit}); lower max_tokens or "
                "shorten the prompt"
            )
    device = next(reward.parameters()).device
    scores: list[float] = []
    for start in range(0, len(rows), batch_size):
        ids, mask = pad_rows(rows[start : start + batch_size], device)
        scores += reward.score(ids, mask).float().tolist()
    return scores


def response_ids(tokenizer, prompt: str, response: str) -> list[int]:
    """The ids the reward reads for a (prompt, response) pair, exactly as `align.method: reward` trained on them:
    the preference loader's tokenization (chat template, or plain lines and the eos token), minus its last token,
    since training reads the hidden state of the input that predicts the response's last token."""
    from llm_platform.trainer.data.sft import messages_of, pieces, tokenize

    record = {"prompt": prompt, "response": response}
    messages = messages_of(record, "instruction", "prompt", "response", "pair")
    example = tokenize(
        tokenizer, pieces(tokenizer, messages), mask_prompt=True, add_bos=tokenizer.chat_template is None
    )
    return example.input_ids[:-1]


def score_responses(
    reward: RewardModel, tokenizer, pairs: Sequence[tuple[str, str]], batch_size: int = 16
) -> list[float]:
    """The reward of each (prompt, response) text pair; responses are cut to fit the reward model's context."""
    limit = reward.config.max_seq_len
    return score_sequences(reward, [response_ids(tokenizer, p, r)[:limit] for p, r in pairs], batch_size)
