"""Speculative decoding is lossless: greedy output equals the target's greedy ``generate``; sampled tokens follow the
target's distribution (chi-square against the exact joint distribution of the first two tokens, fixed seeds, and the
same test rejects the draft's own distribution, so it has the power to notice a wrong sampler)."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from llm_platform.trainer.inference.fast_decode import FastDecoder
from llm_platform.trainer.inference.generate import generate
from llm_platform.trainer.inference.kv_cache import StaticKVCache
from llm_platform.trainer.inference.speculative import speculative_generate, token_distribution, verify
from llm_platform.trainer.model import ModelConfig, get_config
from llm_platform.trainer.model.transformer import Transformer


def _model(seed: int, **overrides) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(get_config("llama-tiny", max_seq_len=128, **overrides))
    model.init_weights(seed=seed)
    return model.eval()


@pytest.mark.parametrize("k", [1, 3, 5])
def test_greedy_output_equals_the_target_greedy_generate(k):
    target, draft = _model(0), _model(1, n_layers=1)
    prompt = [5, 17, 42, 7, 99]
    expected = generate(target, prompt, max_new_tokens=24, temperature=0)
    result = speculative_generate(target, draft, prompt, 24, k=k)
    assert result.tokens == expected
    assert result.proposed == k * result.rounds and 0 <= result.acceptance_rate <= 1


def test_a_draft_equal_to_the_target_is_always_accepted():
    target = _model(0)
    result = speculative_generate(target, target, [1, 2, 3], 20, k=4)
    assert result.acceptance_rate == 1.0 and result.tokens_per_round == 5.0
    assert result.tokens == generate(target, [1, 2, 3], max_new_tokens=20, temperature=0)


def test_fast_decoder_runners_give_the_same_greedy_tokens():
    target, draft = _model(0), _model(1, n_layers=1)
    prompt = [9, 8, 7, 6]
    expected = generate(target, prompt, max_new_tokens=16, temperature=0)
    fast = speculative_generate(FastDecoder(target, 64), FastDecoder(draft, 64), prompt, 16, k=3)
    assert fast.tokens == expected


def test_sliding_window_targets_roll_back_past_their_window():
    target, draft = _model(0, sliding_window=8), _model(1, n_layers=1, sliding_window=8)
    prompt = [3, 1, 4, 1, 5, 9, 2, 6]
    expected = generate(target, prompt, max_new_tokens=20, temperature=0)  # 28 positions, window 8
    assert speculative_generate(target, draft, prompt, 20, k=3).tokens == expected


def test_eos_stops_and_is_not_returned():
    target, draft = _model(0), _model(1, n_layers=1)
    full = generate(target, [4, 4, 4], max_new_tokens=16, temperature=0)
    eos = full[6]
    out = speculative_generate(target, draft, [4, 4, 4], 16, k=3, eos_id=eos).tokens
    assert out == full[: full.index(eos)]


def test_the_rejection_step_reproduces_the_target_distribution():
    p = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.25, 0.25, 0.25, 0.25]])
    q = torch.tensor([[0.1, 0.2, 0.3, 0.4]])  # proposes the target's least likely tokens most often
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(4)
    trials = 4000
    for _ in range(trials):
        d = torch.multinomial(q[0], 1, generator=generator)
        accepted, nxt = verify(d, q, p, generator)
        counts[d.item() if accepted.item() == 1 else nxt.item()] += 1
    assert chisquare(counts.numpy(), (p[0] * trials).numpy()).pvalue > 0.01
    assert chisquare(counts.numpy(), (q[0] * trials).numpy()).pvalue < 1e-6


def _peaked(seed: int) -> Transformer:
    """A tiny model over an 8-token vocabulary with confident, seed-dependent predictions."""
    config = ModelConfig(vocab_size=8, dim=32, n_layers=1, n_heads=2, num_kv_heads=1, ffn_dim=64, max_seq_len=32)
    config.init_std = 0.35
    torch.manual_seed(seed)
    model = Transformer(config)
    model.init_weights(seed=seed)
    return model.eval()


def _joint_first_two(model: Transformer, prompt: list[int], temperature: float) -> torch.Tensor:
    """Exact P(t1, t2 | prompt) under the model's sampling distribution, [V, V]."""
    with torch.no_grad():
        first = token_distribution(model(torch.tensor([prompt]))[0, -1:], temperature)[0]
        rows = [token_distribution(model(torch.tensor([prompt + [t]]))[0, -1:], temperature)[0] for t in range(8)]
    return first[:, None] * torch.stack(rows)


@pytest.mark.parametrize("k", [1, 2])  # k=1: the second token is the bonus or follows a residual draw
def test_sampled_tokens_pass_a_chi_square_test_against_the_target(k):
    target, draft = _peaked(0), _peaked(1)
    prompt, temperature, samples = [1, 2, 3], 1.0, 700
    expected = _joint_first_two(target, prompt, temperature).flatten() * samples
    counts = torch.zeros(64)
    accepted = proposed = 0
    for seed in range(samples):
        result = speculative_generate(target, draft, prompt, 2, k=k, temperature=temperature, seed=seed)
        counts[result.tokens[0] * 8 + result.tokens[1]] += 1
        accepted, proposed = accepted + result.accepted, proposed + result.proposed
    # pool the cells expected fewer than 5 times into one bin, as the chi-square approximation needs
    small = expected < 5
    observed = torch.cat((counts[~small], counts[small].sum()[None]))
    wanted = torch.cat((expected[~small], expected[small].sum()[None]))
    assert chisquare(observed.numpy(), wanted.numpy()).pvalue > 0.001
    draft_joint = _joint_first_two(draft, prompt, temperature).flatten() * samples
    assert chisquare(draft_joint[~small].numpy(), wanted[:-1].numpy(), sum_check=False).pvalue < 1e-6
    assert 0.05 < accepted / proposed < 0.95  # both branches (accept and residual) were exercised


def test_cache_truncation_rolls_back_and_refuses_wrapped_windows():
    config = get_config("mistral-tiny", sliding_window=8)
    cache = StaticKVCache(config, 1, 32)
    model = Transformer(config).eval()
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3, 4, 5, 6]]), cache=cache, start_pos=0)
        cache.truncate(4)
        assert cache.seen == 4 and cache.slot_positions[0][4:].tolist() == [-1] * 4
        model(torch.tensor([[7, 8, 9, 10, 11]]), cache=cache, start_pos=4)
    with pytest.raises(ValueError, match="sliding-window layer"):
        cache.truncate(5)
    with pytest.raises(ValueError, match="cannot truncate to 20"):
        cache.truncate(20)


def test_mismatched_vocabularies_and_bad_k_are_named():
    with pytest.raises(ValueError, match="draft vocabulary"):
        speculative_generate(_model(0), _peaked(0), [1], 4)
    with pytest.raises(ValueError, match="k \\(draft tokens per round\\)"):
        speculative_generate(_model(0), _model(1), [1], 4, k=-1)
