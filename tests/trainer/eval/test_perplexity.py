"""Perplexity and token accuracy over a token array equal a plain per-window computation, and state their context."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from llm_platform.trainer.eval.perplexity import perplexity
from llm_platform.trainer.model import Transformer, get_config
from tests.trainer.model.hf_parity import randomize


def test_every_window_is_scored_once_with_its_token_accuracy():
    model = Transformer(get_config("llama-tiny", vocab_size=64, max_seq_len=16)).eval()
    randomize(model, seed=2)
    tokens = np.random.default_rng(0).integers(0, 64, 16 * 5 + 3)
    result = perplexity(model, tokens, seq_len=16, batch_size=2)
    nll, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, 16 * 5, 16):
            window = torch.from_numpy(tokens[start : start + 17].astype(np.int64))
            logprobs = model(window[None, :-1])[0].log_softmax(-1)
            nll -= logprobs.gather(-1, window[1:, None]).sum().item()
            correct += int((logprobs.argmax(-1) == window[1:]).sum())
    assert result["tokens"] == 80 and result["seq_len"] == 16
    assert result["loss"] == pytest.approx(nll / 80, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(nll / 80), rel=1e-5)
    assert result["token_accuracy"] == correct / 80
