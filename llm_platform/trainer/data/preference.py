"""Preference data for DPO: JSONL records {prompt, chosen, rejected} -> pairs of tokenized examples that share the
prompt and differ in the response, each response trained on its own tokens only (the prompt is masked, as in SFT).

A batch stacks the chosen sequences over the rejected ones ([2B, T], first B rows chosen), so the objective runs one
forward for both; each pair carries the reference model's log-probabilities once they are computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .batching import Example, FinetuneLoader, collate_padded
from .sft import DatasetError, is_validation, messages_of, pieces, read_records, shifted, tokenize


@dataclass
class PreferencePair:
    chosen: Example
    rejected: Example
    reference: tuple[float, float] | None = None  # the reference model's summed log-probs of each response

    def __len__(self) -> int:
        return max(len(self.chosen), len(self.rejected))


def collate_pairs(pairs: Sequence[PreferencePair], pad_id: int) -> dict[str, np.ndarray]:
    """Chosen rows, then rejected rows, right-padded to one width; the reference log-probs in the same order."""
    batch = collate_padded([p.chosen for p in pairs] + [p.rejected for p in pairs], pad_id)
    if all(p.reference is not None for p in pairs):
        batch["reference_logps"] = np.array(
            [p.reference[0] for p in pairs] + [p.reference[1] for p in pairs], dtype=np.float32
        )
    return batch


class PreferenceLoader(FinetuneLoader):
    """`FinetuneLoader` over pairs: the same resumable order and length-bucketed batches, collated as pairs."""

    def build(self, entry: list) -> dict[str, np.ndarray]:
        return collate_pairs([self.examples[i] for i in entry], self.pad_id)


@dataclass
class PreferenceData:
    train: list[PreferencePair] = field(default_factory=list)
    val: list[PreferencePair] = field(default_factory=list)
    records: int = 0
    dropped: int = 0  # a response with no token left within max_len

    def summary(self) -> dict[str, int]:
        return {
            "pairs": self.records,
            "train_pairs": len(self.train),
            "val_pairs": len(self.val),
            "dropped_pairs": self.dropped,
        }


def load_preference_data(
    tokenizer,
    pattern: str,
    *,
    max_len: int,
    prompt_field: str = "prompt",
    chosen_field: str = "chosen",
    rejected_field: str = "rejected",
    max_examples: int | None = None,
    val_fraction: float = 0.0,
) -> PreferenceData:
    data = PreferenceData()
    add_bos = tokenizer.chat_template is None
    for where, record in read_records(pattern, max_examples):
        data.records += 1
        responses = []
        for field_name in (chosen_field, rejected_field):  # each response as the assistant's turn after the prompt
            messages = messages_of(record, "instruction", prompt_field, field_name, where)
            example = tokenize(tokenizer, pieces(tokenizer, messages), mask_prompt=True, add_bos=add_bos)
            responses.append(Example(example.input_ids[: max_len + 1], example.loss_mask[: max_len + 1]))
        if not all(any(r.loss_mask[1:]) for r in responses):
            data.dropped += 1
            continue
        pair = PreferencePair(*responses)
        (data.val if is_validation(record, val_fraction) else data.train).append(pair)
    if not data.train:
        raise DatasetError(f"no training pair left from '{pattern}' ({data.records} records, {data.dropped} dropped)")
    return data


def attach_reference(pairs: Sequence[PreferencePair], logps, pad_id: int, batch_size: int, device: Any) -> None:
    """Fill each pair's `reference` with `logps(input_ids, labels)` of the starting model, in batches."""
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        batch = shifted(collate_pairs(chunk, pad_id), torch.device(device))
        values = logps(batch["input_ids"], batch["labels"]).float().cpu()
        chosen, rejected = values.chunk(2)
        for pair, c, r in zip(chunk, chosen.tolist(), rejected.tolist(), strict=True):
            pair.reference = (c, r)
