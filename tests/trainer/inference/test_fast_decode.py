"""The static-shape batch-1 path: the same tokens and logits as the model's own forward and ``generate`` (CPU, fp32,
eager); fused projections, split-KV attention and the exponential-race sampler checked on their own."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from llm_platform.trainer.inference.fast_decode import (
    FastDecoder,
    fuse_linears,
    sample_from_logits,
    split_kv_attention,
)
from llm_platform.trainer.inference.generate import generate
from llm_platform.trainer.inference.quantize import quantize_model
from llm_platform.trainer.model import get_config
from llm_platform.trainer.model.transformer import Transformer


def _model(preset: str = "llama-tiny", **overrides) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(get_config(preset, max_seq_len=512, **overrides))
    model.init_weights(seed=0)
    return model.eval()


@pytest.mark.parametrize(
    ("preset", "overrides"),
    [
        ("llama-tiny", {}),
        ("qwen2-tiny", {}),  # q/k/v biases
        ("llama-tiny", {"qk_norm": True, "num_kv_heads": 1}),  # Qwen3-style norms, MQA
        ("mistral-tiny", {"sliding_window": 8}),  # windowed layers over the full static cache
        ("llama-tiny", {"mlp": "gelu", "position_encoding": "none"}),
        ("qwen2-tiny", {"fused_projections": True}),  # the model's own qkv_proj / gate_up_proj, used as they are
    ],
)
def test_greedy_output_equals_generate(preset, overrides):
    model = _model(preset, **overrides)
    prompt = [3, 14, 15, 92, 65, 35, 89, 79, 32, 38]
    expected = generate(model, prompt, max_new_tokens=20, temperature=0)
    decoder = FastDecoder(model, max_len=64)
    assert decoder.generate(prompt, 20) == expected
    assert decoder.generate(prompt[:4], 6) == generate(model, prompt[:4], max_new_tokens=6, temperature=0)  # reuse


@pytest.mark.parametrize("attention", ["sdpa", "split_kv"])
def test_logits_match_the_model_forward_and_calls_may_go_back(attention):
    model = _model()
    ids = torch.randint(0, 512, (1, 12), generator=torch.Generator().manual_seed(1))
    reference = model(ids)[0]
    decoder = FastDecoder(model, max_len=300, attention=attention, kv_splits=4)
    assert decoder.slots == (320 if attention == "split_kv" else 304)  # whole chunks of 16 slots (x 4 splits)
    torch.testing.assert_close(decoder.logits(ids[:, :7], 0), reference[:7], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(decoder.logits(ids[:, 7:], 7), reference[7:], rtol=1e-4, atol=1e-4)
    # rewind to position 5 with different tokens: the stale entries past it must not leak in
    other = ids.clone()
    other[0, 5:] = (other[0, 5:] + 1) % 512
    torch.testing.assert_close(decoder.logits(other[:, 5:], 5), model(other)[0, 5:], rtol=1e-4, atol=1e-4)


def test_split_kv_attention_equals_masked_sdpa():
    torch.manual_seed(2)
    q, k, v = torch.randn(1, 2, 6, 16), torch.randn(1, 2, 64, 16), torch.randn(1, 2, 64, 16)
    allowed = torch.arange(64)[None, :] <= torch.tensor([3, 10, 20, 40, 50, 63])[:, None]  # chunk 3 empty for row 0
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=0.25)
    torch.testing.assert_close(split_kv_attention(q, k, v, allowed, 0.25, splits=4), reference, rtol=1e-5, atol=1e-5)


def test_long_prompts_prefill_in_chunks():
    model = _model()
    ids = torch.randint(0, 512, (1, 40), generator=torch.Generator().manual_seed(4))
    decoder = FastDecoder(model, max_len=64, prefill_chunk=16)
    torch.testing.assert_close(decoder.prefill(ids), model(ids)[0, -1:], rtol=1e-4, atol=1e-4)
    assert decoder.generate(ids[0].tolist(), 8) == generate(model, ids[0].tolist(), max_new_tokens=8, temperature=0)


def test_fused_linears_compute_the_concatenation_without_copying_float_weights():
    torch.manual_seed(3)
    layers = [nn.Linear(64, n, bias=True) for n in (32, 16, 16)]
    x = torch.randn(3, 64)
    expected = torch.cat([layer(x) for layer in layers], dim=-1)
    fused = fuse_linears(layers)
    torch.testing.assert_close(fused(x), expected)
    assert layers[1].weight.data_ptr() == fused.weight[32:].data_ptr()
    torch.testing.assert_close(torch.cat([layer(x) for layer in layers], dim=-1), expected)
    with pytest.raises(ValueError, match="different kinds"):
        fuse_linears([nn.Linear(4, 4), nn.Identity()])


@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_quantized_models_decode_like_their_own_generate(scheme):
    model = quantize_model(_model(), scheme, group_size=32)
    prompt = [7, 8, 9, 10]
    assert FastDecoder(model, max_len=40).generate(prompt, 12) == generate(
        model, prompt, max_new_tokens=12, temperature=0
    )


def test_exponential_race_samples_from_the_softmax():
    from scipy.stats import chisquare

    probs = torch.tensor([0.5, 0.25, 0.15, 0.1])
    generator = torch.Generator().manual_seed(0)
    noise = torch.empty(4000, 4).exponential_(1.0, generator=generator)
    draws = sample_from_logits(probs.log().expand(4000, 4), noise, 1.0, None, None)
    counts = torch.bincount(draws, minlength=4).double()
    assert chisquare(counts.numpy(), (probs.double() * 4000).numpy()).pvalue > 0.01
    top2 = sample_from_logits(probs.log().expand(4000, 4), noise, 1.0, 2, None)
    assert set(top2.tolist()) == {0, 1}


def test_sampling_is_reproducible_and_stops_at_eos():
    model = _model()
    decoder = FastDecoder(model, max_len=64, sync_every=4)
    first = decoder.generate([1, 2, 3], 16, temperature=1.0, seed=5)
    assert decoder.generate([1, 2, 3], 16, temperature=1.0, seed=5) == first
    eos = first[5]
    stopped = decoder.generate([1, 2, 3], 16, temperature=1.0, seed=5, eos_id=eos)
    assert stopped == first[: first.index(eos)]


def test_bad_requests_and_unsupported_models_are_named():
    decoder = FastDecoder(_model(), max_len=16)
    with pytest.raises(ValueError, match="exceeds max_len 16"):
        decoder.generate(list(range(10)), 10)
    with pytest.raises(ValueError, match="prompt_ids is empty"):
        decoder.generate([], 4)
    with pytest.raises(ValueError, match="MLA"):
        FastDecoder(_model("deepseek-tiny"), max_len=16)
    with pytest.raises(ValueError, match="RoPE table"):
        FastDecoder(_model(), max_len=600)
    with pytest.raises(ValueError, match="attention must be"):
        FastDecoder(_model(), max_len=16, attention="paged")
    with pytest.raises(ValueError, match="needs the model on a CUDA device"):
        FastDecoder(_model(), max_len=16, cuda_graph=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_decode_equals_eager_on_the_gpu():
    model = _model().cuda()
    prompt = [3, 1, 4, 1, 5]
    eager = FastDecoder(model, max_len=64, compile=False, cuda_graph=False).generate(prompt, 24)
    assert FastDecoder(model, max_len=64, compile=False, cuda_graph=True).generate(prompt, 24) == eager
