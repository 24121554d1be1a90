"""Requests as a client sends them: bad fields are refused by name while the engine keeps serving; stop strings
never reach the text, even in part; logprobs are the model's; presence/frequency penalties follow OpenAI's formula."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from llm_platform.trainer.inference import BeamSearchParams, EngineConfig, InvalidRequest, LLMEngine, SamplingParams
from llm_platform.trainer.inference.sampling import apply_presence_frequency
from llm_platform.trainer.tokenizer import train_bpe

from .conftest import tiny_model

TEXTS = [
    "the quick brown fox jumps over the lazy dog. " * 3,
    "a stitch in time saves nine; the early bird catches the worm.\n\n",
    "to be or not to be, that is the question. ",
] * 20


@pytest.fixture(scope="module")
def engine() -> LLMEngine:
    tokenizer = train_bpe(TEXTS, 300)
    return LLMEngine(tiny_model(vocab_size=tokenizer.vocab_size), tokenizer, EngineConfig(block_size=4))


BAD = [
    ({"prompt": ""}, "prompt"),
    ({"prompt": []}, "prompt"),
    ({"prompt": list(range(1, 200))}, "prompt"),
    ({"prompt": [1, 2, 10**9]}, "prompt[2]"),
    ({"adapter": "nope"}, "adapter"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"repetition_penalty": -1.0}, "repetition_penalty"),
    ({"presence_penalty": -3.0}, "presence_penalty"),
    ({"frequency_penalty": float("nan")}, "frequency_penalty"),
    ({"temperature": -0.5}, "temperature"),
    ({"top_k": -1}, "top_k"),
    ({"min_p": 2.0}, "min_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"stop": ("x" * 10_000,)}, "stop[0]"),
    ({"stop": ("",)}, "stop[0]"),
    ({"stop": tuple(f"s{i}" for i in range(100))}, "stop"),
    ({"stop_token_ids": (10**6,)}, "stop_token_ids[0]"),
    ({"logprobs": 1000}, "logprobs"),
    ({"seed": -1}, "seed"),
    ({"n": 3, "temperature": 0.0}, "n"),
]


@pytest.mark.parametrize(("change", "field"), BAD, ids=[f for _, f in BAD])
def test_bad_request_is_refused_by_field_and_the_engine_keeps_serving(engine, change, field):
    prompt = change.pop("prompt", "the quick")
    adapter = change.pop("adapter", None)
    params = dataclasses.replace(SamplingParams(max_tokens=4, temperature=0), **change)
    engine.add_request("good", "to be", SamplingParams(max_tokens=3, temperature=0))
    with pytest.raises(InvalidRequest) as err:
        engine.add_request("bad", prompt, params, adapter)
    assert err.value.field == field and str(err.value).startswith(field)
    done = []
    while engine.has_unfinished_requests():
        done += [o.request_id for o in engine.step() if o.finished]
    assert done == ["good"]


def test_duplicate_request_id_is_refused(engine):
    engine.add_request("same", "to be", SamplingParams(max_tokens=2))
    with pytest.raises(InvalidRequest, match="request_id"):
        engine.add_request("same", "to be", SamplingParams(max_tokens=2))
    engine.abort_request("same")
    engine.step()


def test_stop_string_spanning_tokens_never_reaches_the_text(engine):
    prompt = "the quick brown fox"
    plain = engine.generate([prompt], SamplingParams(max_tokens=24, temperature=0, ignore_eos=True))[0].outputs[0]
    ids, text = plain.token_ids, plain.text
    # a stop string that starts inside one token and ends inside a later one
    cut = len(engine.tokenizer.decode(ids[:3])) - 1
    stop = text[cut : cut + 4]
    assert len(stop) == 4 and stop not in text[:cut]
    engine.add_request("s", prompt, SamplingParams(max_tokens=24, temperature=0, ignore_eos=True, stop=(stop,)))
    streamed = []
    while engine.has_unfinished_requests():
        for out in engine.step():
            streamed.append(out.outputs[0].text)
    final = out.outputs[0]
    assert final.text == text[:cut] and final.finish_reason == "stop" and final.stop_reason == stop
    assert all(final.text.startswith(s) for s in streamed)  # text only grows, nothing shown is taken back
    assert final.token_ids == ids[: len(final.token_ids)]


def test_stop_token_id_ends_without_text(engine):
    plain = engine.generate(["to be"], SamplingParams(max_tokens=8, temperature=0, ignore_eos=True))[0].outputs[0]
    stop_id = plain.token_ids[3]
    out = engine.generate(["to be"], SamplingParams(max_tokens=8, temperature=0, stop_token_ids=(stop_id,)))[0]
    first = plain.token_ids.index(stop_id)
    assert out.outputs[0].token_ids == plain.token_ids[: first + 1]
    assert out.outputs[0].stop_reason == stop_id and out.outputs[0].finish_reason == "stop"
    assert out.outputs[0].text == engine.tokenizer.decode(plain.token_ids[:first])


def test_logprobs_are_the_models_log_softmax(engine):
    out = engine.generate(["the quick"], SamplingParams(max_tokens=5, temperature=0, logprobs=3))[0]
    completion = out.outputs[0]
    ids = out.prompt_token_ids + completion.token_ids
    with torch.no_grad():
        reference = engine.model(torch.tensor([ids]))[0].log_softmax(-1)
    for i, entry in enumerate(completion.logprobs):
        row = reference[len(out.prompt_token_ids) - 1 + i]
        assert entry.token_id == completion.token_ids[i]
        assert entry.logprob == pytest.approx(float(row[entry.token_id]), abs=1e-4)
        assert [t for t, _ in entry.top] == row.topk(3).indices.tolist()
        assert entry.top[0][0] == entry.token_id  # greedy picks the top token


def test_presence_and_frequency_penalties_follow_openai():
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    counts = torch.tensor([[0.0, 1.0, 3.0, 0.0]])
    out = apply_presence_frequency(logits, counts, torch.tensor([0.5]), torch.tensor([0.25]))
    # logit - presence * [count > 0] - frequency * count
    assert out.tolist() == [[1.0, 2.0 - 0.5 - 0.25, 3.0 - 0.5 - 0.75, 4.0]]


def test_frequency_penalty_in_the_engine_matches_the_formula(engine):
    """Greedy decoding with a frequency penalty equals argmax of (model logits - penalty x output counts)."""
    params = SamplingParams(max_tokens=10, temperature=0, frequency_penalty=1.5, presence_penalty=0.5, ignore_eos=True)
    out = engine.generate(["the"], params)[0]
    ids = list(out.prompt_token_ids)
    produced: list[int] = []
    with torch.no_grad():
        for _ in range(10):
            logits = engine.model(torch.tensor([ids]))[0, -1]
            counts = torch.bincount(torch.tensor(produced, dtype=torch.long), minlength=logits.shape[0]).float()
            token = int((logits - 1.5 * counts - 0.5 * (counts > 0).float()).argmax())
            produced.append(token)
            ids.append(token)
    assert out.outputs[0].token_ids == produced


def test_eos_ends_with_stop_unless_ignored():
    engine = LLMEngine(tiny_model(), None, EngineConfig(block_size=4))
    plain = engine.generate([[5, 6, 7]], SamplingParams(max_tokens=8, temperature=0, ignore_eos=True))[0].outputs[0]
    engine.eos_token_ids = {plain.token_ids[2]}
    first = plain.token_ids.index(plain.token_ids[2])
    out = engine.generate([[5, 6, 7]], SamplingParams(max_tokens=8, temperature=0))[0].outputs[0]
    assert out.token_ids == plain.token_ids[: first + 1]
    assert out.finish_reason == "stop" and out.stop_reason is None
    ignored = engine.generate([[5, 6, 7]], SamplingParams(max_tokens=8, temperature=0, ignore_eos=True))[0]
    assert ignored.outputs[0].token_ids == plain.token_ids


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"num_beams": 0}, "num_beams"),
        ({"num_return_sequences": 5}, "num_return_sequences"),
        ({"early_stopping": "sometimes"}, "early_stopping"),
        ({"length_penalty": float("inf")}, "length_penalty"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
    ],
)
def test_bad_beam_search_is_refused_by_field(engine, change, field):
    params = dataclasses.replace(BeamSearchParams(num_beams=4, max_tokens=4), **change)
    with pytest.raises(InvalidRequest) as err:
        engine.beam_search("to be", params)
    assert err.value.field == field
