"""Supervised fine-tuning data: JSONL records -> tokenized `Example`s with a loss mask -> the engine's steps.

Three record formats. `instruction`: a prompt and a response field, rendered as one user turn and one assistant turn
through the tokenizer's chat template (or, without one, as prompt, newline, response, end of sequence). `chat`: a
`messages` list of {role, content}; every assistant turn is trained. `text`: one `text` field, all trained.

The loss mask comes from rendering the conversation turn by turn and tokenizing each piece on its own, so a trained
token is exactly a token of an assistant message (its end marker included), never of the template's role headers or
of the prompt. Tokenizing pieces separately can differ from tokenizing the whole string at a piece boundary; at the
boundaries of a chat template (special tokens) it does not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .batching import IGNORE_INDEX, Example, FinetuneLoader, collate_padded
from .sources import expand, open_text

FORMATS = ("instruction", "chat", "text")


class DatasetError(ValueError):
    """A record that cannot become an example; the message names the file and line."""


def read_records(pattern: str, max_records: int | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(`path:line`, record) for each JSON object in the JSONL files matching `pattern` (local glob or s3://)."""
    count = 0
    for path in expand(pattern):
        with open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DatasetError(f"{where}: not valid JSON ({e.msg})") from None
                if not isinstance(record, dict):
                    raise DatasetError(f"{where}: expected a JSON object, got {type(record).__name__}")
                yield where, record
                count += 1
                if max_records is not None and count >= max_records:
                    return


def messages_of(record: Mapping[str, Any], fmt: str, prompt_field: str, response_field: str, where: str) -> list:
    """The record as chat messages (instruction, chat) — or a one-item list holding the text (text)."""
    if fmt == "instruction":
        missing = [f for f in (prompt_field, response_field) if not isinstance(record.get(f), str)]
        if missing:
            raise DatasetError(
                f"{where}: no string field {', '.join(repr(f) for f in missing)}; set the dataset's field names "
                f"(prompt_field, response_field, chosen_field, rejected_field) to the record's (it has: "
                f"{', '.join(sorted(record))})"
            )
        return [
            {"role": "user", "content": record[prompt_field]},
            {"role": "assistant", "content": record[response_field]},
        ]
    if fmt == "chat":
        messages = record.get("messages")
        if not isinstance(messages, list) or not messages:
            raise DatasetError(f"{where}: a chat record needs a non-empty `messages` list of {{role, content}}")
        if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
            raise DatasetError(f"{where}: no assistant message, so nothing to learn from")
        return messages
    if fmt == "text":
        if not isinstance(record.get("text"), str):
            raise DatasetError(f"{where}: no string field 'text'")
        return [{"role": "text", "content": record["text"]}]
    raise DatasetError(f"format '{fmt}' is not one of {', '.join(FORMATS)}")


def pieces(tokenizer, messages: Sequence[Mapping[str, Any]]) -> list[tuple[str, bool]]:
    """The conversation as consecutive (text, trained) pieces whose concatenation is the whole rendering."""
    if messages[0]["role"] == "text":
        return [(messages[0]["content"], True)]
    if tokenizer.chat_template is None:
        # no template: user turns as plain lines, assistant turns trained and closed by the end-of-sequence token
        eos = tokenizer.roles.get("eos", "")
        out = []
        for m in messages:
            trained = m["role"] == "assistant"
            out.append((m["content"] + (eos if trained else "\n"), trained))
        return out
    out: list[tuple[str, bool]] = []
    before = ""
    for i, message in enumerate(messages):
        after = tokenizer.render_chat(messages[: i + 1])
        if message["role"] == "assistant":
            header = tokenizer.render_chat(messages[:i], add_generation_prompt=True) if i else ""
            if not (header.startswith(before) and after.startswith(header)):
                raise DatasetError("the chat template does not render turns as a growing prefix; cannot mask prompts")
            out += [(header[len(before) :], False), (after[len(header) :], True)]
        else:
            if not after.startswith(before):
                raise DatasetError("the chat template does not render turns as a growing prefix; cannot mask prompts")
            out.append((after[len(before) :], False))
        before = after
    return [(text, trained) for text, trained in out if text]


def tokenize(tokenizer, parts: Sequence[tuple[str, bool]], mask_prompt: bool, add_bos: bool) -> Example:
    """Ids of the pieces, each tokenized on its own, and which of them are trained."""
    ids: list[int] = []
    mask: list[bool] = []
    if add_bos and tokenizer.bos_id is not None:
        ids.append(tokenizer.bos_id)
        mask.append(False)
    for text, trained in parts:
        piece = tokenizer.encode(text, allow_special=True)
        ids += piece
        mask += [trained or not mask_prompt] * len(piece)
    return Example(ids, mask)


def is_validation(record: Mapping[str, Any], fraction: float) -> bool:
    """Held out by content hash: the same records are held out whatever the file order or the run."""
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


@dataclass
class SftData:
    train: list[Example] = field(default_factory=list)
    val: list[Example] = field(default_factory=list)
    records: int = 0
    truncated: int = 0  # cut at max_len
    dropped: int = 0  # no trained token left after the cut

    def summary(self) -> dict[str, int]:
        trained = sum(sum(e.loss_mask) for e in self.train)
        return {
            "examples": self.records,
            "train_examples": len(self.train),
            "val_examples": len(self.val),
            "truncated_examples": self.truncated,
            "dropped_examples": self.dropped,
            "train_tokens": sum(len(e) for e in self.train),
            "trained_tokens": trained,
        }


def load_sft_data(
    tokenizer,
    pattern: str,
    fmt: str,
    *,
    max_len: int,
    mask_prompt: bool = True,
    prompt_field: str = "prompt",
    response_field: str = "response",
    max_examples: int | None = None,
    val_fraction: float = 0.0,
) -> SftData:
    """Every record as an example, split into train and validation; examples with nothing to learn are dropped."""
    data = SftData()
    for where, record in read_records(pattern, max_examples):
        data.records += 1
        try:
            parts = pieces(tokenizer, messages_of(record, fmt, prompt_field, response_field, where))
        except DatasetError as e:
            raise DatasetError(str(e) if str(e).startswith(where) else f"{where}: {e}") from None
        # the chat template writes its own bos token; plain text and template-less pairs get one here
        example = tokenize(tokenizer, parts, mask_prompt, add_bos=fmt == "text" or tokenizer.chat_template is None)
        if len(example) > max_len + 1:  # max_len inputs, plus one for the last target
            data.truncated += 1
            example = Example(example.input_ids[: max_len + 1], example.loss_mask[: max_len + 1])
        if not any(example.loss_mask[1:]):  # the first token is never a target
            data.dropped += 1
            continue
        (data.val if is_validation(record, val_fraction) else data.train).append(example)
    if not data.train:
        raise DatasetError(
            f"no training example left from '{pattern}' ({data.records} records, {data.dropped} with no response "
            f"token within {max_len} tokens, {len(data.val)} held out)"
        )
    return data


def shifted(batch: Mapping[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    """A padded or packed batch as the engine's objectives take it: inputs and the targets one to the right (and the
    pairs' reference log-probabilities, for DPO). A packed batch keeps its inputs' `document_ids` and `position_ids`,
    and the last token of each example predicts nothing (its next token opens another example)."""
    ids = torch.from_numpy(batch["input_ids"])
    labels = torch.from_numpy(batch["labels"])[:, 1:]
    out = {"input_ids": ids[:, :-1].to(device)}
    if "document_ids" in batch:
        documents = torch.from_numpy(batch["document_ids"])
        labels = labels.masked_fill(documents[:, 1:] != documents[:, :-1], IGNORE_INDEX)
        out["document_ids"] = documents[:, :-1].to(device)
        out["position_ids"] = torch.from_numpy(batch["position_ids"])[:, :-1].to(device)
    out["labels"] = labels.to(device)
    if "reference_logps" in batch:
        out["reference_logps"] = torch.as_tensor(batch["reference_logps"], dtype=torch.float32).to(device)
    return out


def validation_batches(
    examples: Sequence, batch_size: int, pad_id: int, rank: int, world_size: int, device: torch.device, collate=None
) -> list[dict[str, torch.Tensor]]:
    """This rank's share of the held-out examples, in padded batches. Every rank gets as many examples, and so as many
    batches (FSDP forwards are collective): the last `len % world_size` examples are left out."""
    usable = len(examples) // world_size * world_size
    mine = examples[rank:usable:world_size]
    collate = collate or collate_padded
    return [shifted(collate(mine[i : i + batch_size], pad_id), device) for i in range(0, len(mine), batch_size)]


class FinetuneSteps:
    """`FinetuneLoader` batches grouped into optimizer steps for the engine: each step takes `grad_accum *
    world_size` batches, and rank `r` trains on its `grad_accum` of them. Resumes through the loader's state."""

    def __init__(self, loader: FinetuneLoader, grad_accum: int, rank: int, world_size: int, device: torch.device):
        self.loader = loader
        self.grad_accum = grad_accum
        self.rank = rank
        self.world_size = world_size
        self.device = device
        self._batches: Iterator | None = None

    def steps_per_epoch(self) -> int:
        return max(1, self.loader.batches_per_epoch() // (self.grad_accum * self.world_size))

    def next_step(self) -> list[dict[str, torch.Tensor]]:
        if self._batches is None:
            self._batches = iter(self.loader)
        batches = [next(self._batches) for _ in range(self.grad_accum * self.world_size)]
        mine = batches[self.rank * self.grad_accum : (self.rank + 1) * self.grad_accum]
        return [shifted(b, self.device) for b in mine]

    def state_dict(self) -> dict[str, Any]:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loader.load_state_dict(state)
        self._batches = None
