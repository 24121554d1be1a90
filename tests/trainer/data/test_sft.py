"""SFT data: records -> examples whose trained tokens are exactly the assistant's, and steps for the engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llm_platform.trainer.data.batching import IGNORE_INDEX, FinetuneLoader
from llm_platform.trainer.data.sft import DatasetError, FinetuneSteps, load_sft_data, pieces, tokenize
from llm_platform.trainer.tokenizer import train_bpe
from tests.conftest import shared_path

TEXTS = [f"The {w} jumps over the lazy dog number {i}, and the answer is {i * 7}." for i, w in
         enumerate(["fox", "cat", "cow", "hen"] * 30)]  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe(TEXTS, 400)


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def trained_text(tokenizer, example) -> str:
    return tokenizer.decode([t for t, m in zip(example.input_ids, example.loss_mask, strict=True) if m])


def test_an_instruction_trains_on_the_response_and_its_end_marker_only(tokenizer):
    assert tokenizer.chat_template is not None  # the default template: <|user|> ... <|end|>
    parts = pieces(tokenizer, [{"role": "user", "content": "What is 6 x 7?"}, {"role": "assistant", "content": "42"}])
    example = tokenize(tokenizer, parts, mask_prompt=True, add_bos=False)
    assert tokenizer.decode(example.input_ids) == tokenizer.render_chat(
        [{"role": "user", "content": "What is 6 x 7?"}, {"role": "assistant", "content": "42"}]
    )
    assert trained_text(tokenizer, example) == "42<|end|>\n"
    unmasked = tokenize(tokenizer, parts, mask_prompt=False, add_bos=False)
    assert all(unmasked.loss_mask)


def test_every_assistant_turn_of_a_chat_is_trained(tokenizer):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Count"},
        {"role": "assistant", "content": "1 2 3"},
    ]
    example = tokenize(tokenizer, pieces(tokenizer, messages), mask_prompt=True, add_bos=False)
    assert trained_text(tokenizer, example) == "Hello.<|end|>\n1 2 3<|end|>\n"


def test_without_a_chat_template_pairs_become_prompt_newline_response_eos(tokenizer):
    plain = train_bpe(TEXTS, 400, special_tokens=["<|bos|>", "<|eos|>", "<|pad|>"])
    assert plain.chat_template is None
    parts = pieces(plain, [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}])
    example = tokenize(plain, parts, mask_prompt=True, add_bos=True)
    assert plain.decode(example.input_ids) == "<|bos|>Q?\nA.<|eos|>"
    assert trained_text(plain, example) == "A.<|eos|>"


def test_load_splits_truncates_and_drops_what_has_nothing_to_learn(tokenizer, tmp_path):
    records = [{"prompt": f"Say {i}", "response": f"{i} " * (1 + i % 5)} for i in range(60)]
    records.append({"prompt": "long " * 200, "response": "cut off"})  # the response falls past max_len
    path = write_jsonl(tmp_path / "sft.jsonl", records)
    data = load_sft_data(tokenizer, str(path), "instruction", max_len=48, val_fraction=0.2)
    summary = data.summary()
    assert summary["examples"] == 61 and summary["dropped_examples"] == 1 and summary["truncated_examples"] == 1
    assert summary["train_examples"] + summary["val_examples"] == 60
    assert 0 < summary["val_examples"] < 25
    assert all(len(e) <= 49 for e in data.train + data.val)
    again = load_sft_data(tokenizer, str(path), "instruction", max_len=48, val_fraction=0.2)
    assert [e.input_ids for e in again.val] == [e.input_ids for e in data.val]  # held out by content, stably


@pytest.mark.parametrize(
    ("record", "fmt", "message"),
    [
        ({"question": "q", "answer": "a"}, "instruction", "no string field 'prompt', 'response'; set the dataset's"),
        ({"messages": [{"role": "user", "content": "q"}]}, "chat", "no assistant message"),
        ({"body": "x"}, "text", "no string field 'text'"),
    ],
)
def test_a_bad_record_is_named_by_file_and_line(tokenizer, tmp_path, record, fmt, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [record])
    with pytest.raises(DatasetError, match=f"bad.jsonl:1: {message}"):
        load_sft_data(tokenizer, str(path), fmt, max_len=64)


def test_steps_deal_batches_to_ranks_and_resume_exactly(tokenizer, tmp_path):
    records = [{"prompt": f"Say {i}", "response": f"{i} " * (1 + i % 7)} for i in range(40)]
    data = load_sft_data(tokenizer, str(write_jsonl(tmp_path / "s.jsonl", records)), "instruction", max_len=64)

    def steps(rank: int) -> FinetuneSteps:
        loader = FinetuneLoader(data.train, mode="dynamic", max_tokens=4 * 65, epochs=None, seed=3)
        return FinetuneSteps(loader, grad_accum=2, rank=rank, world_size=2, device=torch.device("cpu"))

    rank0, rank1 = steps(0), steps(1)
    first0, first1 = rank0.next_step(), rank1.next_step()
    assert len(first0) == len(first1) == 2

    def same(a, b):
        return a.shape == b.shape and torch.equal(a, b)

    assert not same(first0[0]["input_ids"], first1[0]["input_ids"])  # each rank trains on its own batches
    batch = first0[0]
    assert batch["input_ids"].shape == batch["labels"].shape
    # targets are the inputs shifted by one, prompts and padding ignored
    real = batch["labels"] != IGNORE_INDEX
    assert real.any() and (batch["labels"][real] >= 0).all()

    state = rank0.state_dict()
    expected = rank0.next_step()
    resumed = steps(0)
    resumed.load_state_dict(state)
    got = resumed.next_step()
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(got, expected, strict=True))


def test_gsm8k_as_instruction_data(tokenizer):
    pattern = str(shared_path("data", "gsm8k", "train.jsonl"))
    data = load_sft_data(tokenizer, pattern, "instruction", max_len=512, prompt_field="question",
                         response_field="answer", max_examples=50)  # fmt: skip
    assert data.summary()["train_examples"] == 50 and data.summary()["trained_tokens"] > 1000
