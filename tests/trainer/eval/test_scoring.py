"""Continuation log-likelihoods: batched, de-duplicated and head-on-scored-positions-only scoring equals the plain sum
over one unbatched forward pass per request."""

from __future__ import annotations

import pytest
import torch

from llm_platform.trainer.eval.scoring import score_continuations
from llm_platform.trainer.model import Transformer, get_config
from tests.trainer.model.hf_parity import randomize

MAX_LENGTH = 24


@pytest.fixture(scope="module")
def model():
    model = Transformer(get_config("llama-tiny", vocab_size=64, max_seq_len=MAX_LENGTH)).eval()
    randomize(model, seed=1)
    return model


def plain_score(model, context: list[int], continuation: list[int]) -> tuple[float, bool]:
    """The definition: one forward over the left-cut window, log-softmax everywhere, sum at the continuation."""
    window = (context + continuation)[-(MAX_LENGTH + 1) :]
    with torch.no_grad():
        logprobs = model(torch.tensor([window[:-1]]))[0].log_softmax(-1)[-len(continuation) :]
    target = torch.tensor(continuation)
    return logprobs.gather(-1, target[:, None]).sum().item(), bool((logprobs.argmax(-1) == target).all())


def random_requests(n: int, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 30, (n, 2), generator=generator)  # contexts past MAX_LENGTH get cut on the left
    return [
        (
            torch.randint(0, 64, (c,), generator=generator).tolist(),
            torch.randint(0, 64, (k % 5 + 1,), generator=generator).tolist(),
        )
        for c, k in lengths.tolist()
    ]


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_scores_equal_one_plain_forward_per_request(model, batch_size):
    requests = random_requests(12)
    scores = score_continuations(model, requests, MAX_LENGTH, batch_size)
    for (context, continuation), (logprob, greedy) in zip(requests, scores, strict=True):
        expected, expected_greedy = plain_score(model, context, continuation)
        assert logprob == pytest.approx(expected, abs=1e-4)
        assert greedy == expected_greedy


def test_requests_with_the_same_model_input_share_one_forward(model, monkeypatch):
    """A question scored against the one-token answers A..D needs one pass, not four."""
    calls = []
    forward = model.hidden_states
    monkeypatch.setattr(model, "hidden_states", lambda ids, **kw: calls.append(ids.shape) or forward(ids, **kw))
    question = [5, 9, 11, 2]
    scores = score_continuations(model, [(question, [answer]) for answer in (30, 31, 32, 33)], MAX_LENGTH, 8)
    assert calls == [torch.Size([1, 4])]
    assert [s[0] for s in scores] == pytest.approx([plain_score(model, question, [a])[0] for a in (30, 31, 32, 33)])


def test_the_greedy_continuation_is_flagged(model):
    context = [3, 1, 4, 1, 5]
    with torch.no_grad():
        best = model(torch.tensor([context]))[0, -1].argmax().item()
    assert score_continuations(model, [(context, [best])], MAX_LENGTH)[0][1] is True


def test_an_empty_context_is_refused(model):
    with pytest.raises(ValueError, match="at least one context token"):
        score_continuations(model, [([], [1, 2])], MAX_LENGTH)


def test_a_continuation_longer_than_the_context_window_is_refused(model):
    with pytest.raises(ValueError, match="continuation of 25 tokens cannot be scored in 24 positions"):
        score_continuations(model, [([1], list(range(25)))], MAX_LENGTH)
