"""Static KV cache: generating piece by piece gives the logits of one full forward."""

from __future__ import annotations

import pytest
import torch

from llm_platform.trainer.inference.kv_cache import StaticKVCache
from llm_platform.trainer.model import Transformer, get_config

CONFIGS = {
    "llama": dict(preset="llama-tiny"),
    "sliding-window-ring": dict(preset="mistral-tiny", sliding_window=5),
    "window-on-one-layer": dict(preset="mistral-tiny", sliding_window=5, sliding_window_layers=[1]),
    "mla-latent": dict(preset="deepseek-tiny"),
    "alibi": dict(preset="llama-tiny", position_encoding="alibi"),
    "alibi-sliding-window": dict(preset="mistral-tiny", position_encoding="alibi", sliding_window=5),
    "yarn": dict(preset="llama-tiny", rope_scaling={"type": "yarn", "factor": 4.0, "original_max_seq_len": 8}),
}


def build(name: str) -> Transformer:
    fields = dict(CONFIGS[name])
    config = get_config(fields.pop("preset"), **fields)
    torch.manual_seed(0)
    return Transformer(config).eval()


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("chunks", [[7, 1, 1, 1, 1, 1], [3, 5, 2, 3]])
def test_chunked_generation_matches_full_forward(name, chunks):
    model = build(name)
    ids = torch.randint(0, model.config.vocab_size, (2, sum(chunks)), generator=torch.Generator().manual_seed(0))
    cache = StaticKVCache(model.config, batch_size=2, max_len=32)
    with torch.no_grad():
        full = model(ids)
        start, pieces = 0, []
        for size in chunks:
            pieces.append(model(ids[:, start : start + size], cache=cache, start_pos=start))
            start += size
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_window_layers_use_a_ring_of_window_slots():
    config = get_config("mistral-tiny", sliding_window=5, sliding_window_layers=[1])
    cache = StaticKVCache(config, batch_size=1, max_len=1000)
    assert cache.first[0].shape[2] == 1000 and cache.first[1].shape[2] == 5


def test_mla_cache_holds_the_latent_not_per_head_keys():
    config = get_config("deepseek-tiny")
    cache = StaticKVCache(config, batch_size=1, max_len=100)
    assert cache.first[0].shape == (1, 1, 100, config.kv_lora_rank)
    assert cache.second[0].shape == (1, 1, 100, config.qk_rope_head_dim)


def test_cache_rejects_overflow_and_gaps():
    model = build("llama")
    cache = StaticKVCache(model.config, batch_size=1, max_len=8)
    with pytest.raises(ValueError, match="holds 8 positions"):
        model(torch.zeros(1, 9, dtype=torch.long), cache=cache, start_pos=0)
    model(torch.zeros(1, 4, dtype=torch.long), cache=cache, start_pos=0)
    with pytest.raises(ValueError, match="start_pos=6"):
        model(torch.zeros(1, 1, dtype=torch.long), cache=cache, start_pos=6)
