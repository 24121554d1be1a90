"""A benchmark that needs no download: pick the right standard-library function over a plausibly wrong one.

The held-out (`test`) pairs of `data.stdlib_functions`, functions no training stage saw, each asked for by its
docstring, with the real function and a wrong one (one planted bug, or another function's body). The model
"answers" by likelihood, as lm-eval scores multiple choice: `acc` is the share of pairs where the real function has
the higher summed log-probability given the prompt, `acc_norm` the same per answer token (so length does not
decide). Chance is 0.5. The prompt is rendered exactly as the SFT and DPO stages render it (the tokenizer's chat
template), and only answer tokens are scored.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from llm_platform.trainer.data.jsonl import write_jsonl
from llm_platform.trainer.data.preference import collate_pairs, load_preference_data
from llm_platform.trainer.data.sft import DatasetError, shifted
from llm_platform.trainer.data.stdlib_functions import records
from llm_platform.trainer.train.dpo import sequence_logps
from llm_platform.trainer.train.loss import IGNORE_INDEX

NAME = "stdlib_functions"


@torch.no_grad()
def function_choice(
    model: nn.Module, tokenizer, scratch: Path, *, max_len: int, batch_size: int = 8, limit: int | None = None
) -> dict:
    """{acc, acc_norm, pairs, dropped} of `model` on the held-out pairs (at most `limit`)."""
    path = write_jsonl(records("preference", "test", limit), scratch / f"{NAME}-test.jsonl")
    try:
        data = load_preference_data(tokenizer, str(path), max_len=max_len)
    except DatasetError:
        raise ValueError(
            f"eval.metrics: {NAME}: no held-out pair has an answer token within the model's {max_len}-token context "
            "(the prompts alone are longer); use a model with max_seq_len of 256 or more, or leave the metric out"
        ) from None
    pairs = data.train  # every record: no validation share is taken from a test set
    pad = tokenizer.pad_id if tokenizer.pad_id is not None else (tokenizer.eos_id or 0)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    right = right_norm = 0
    try:
        for start in range(0, len(pairs), batch_size):
            batch = shifted(collate_pairs(pairs[start : start + batch_size], pad), device)
            logps = sequence_logps(model(batch["input_ids"]), batch["labels"]).float()
            counts = (batch["labels"] != IGNORE_INDEX).sum(-1).clamp(min=1)
            chosen, rejected = logps.chunk(2)
            chosen_n, rejected_n = counts.chunk(2)
            right += int((chosen > rejected).sum())
            right_norm += int((chosen / chosen_n > rejected / rejected_n).sum())
    finally:
        model.train(was_training)
    n = max(len(pairs), 1)
    return {"acc": right / n, "acc_norm": right_norm / n, "pairs": len(pairs), "dropped": data.dropped}
