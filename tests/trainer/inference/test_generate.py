"""Cached generation equals recomputing the whole context at every step; sampling filters keep what they promise."""

from __future__ import annotations

import torch

from llm_platform.trainer.inference.generate import generate
from llm_platform.trainer.inference.sampling import filter_logits, sample_next
from llm_platform.trainer.model import get_config
from llm_platform.trainer.model.transformer import Transformer


def _model() -> Transformer:
    torch.manual_seed(0)
    model = Transformer(get_config("llama-tiny", max_seq_len=64))
    model.init_weights(seed=0)
    return model


def test_greedy_cached_generation_matches_full_recompute():
    model = _model()
    prompt = [5, 17, 42, 7]
    cached = generate(model, prompt, max_new_tokens=12, temperature=0)
    ids = list(prompt)
    for _ in range(12):
        ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    assert cached == ids[len(prompt) :]


def test_generation_stops_at_the_context_limit():
    model = _model()
    out = generate(model, list(range(60)), max_new_tokens=50, temperature=0)
    assert len(out) == 4  # 60 prompt tokens + 4 new fill the 64-token context


def test_top_k_and_top_p_keep_only_the_allowed_tokens():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True, True]]
    probs = logits.softmax(-1)[0]  # 0.636, 0.234, 0.086, ...
    kept = ~torch.isinf(filter_logits(logits, top_p=0.8))
    assert kept.tolist() == [[True, True, False, False, False]] and probs[:2].sum() >= 0.8
    assert sample_next(logits, temperature=0).item() == 0
