"""Greedy, sampled and beam-search outputs equal transformers' ``generate`` on the same weights (fp32).

The HF model is a small random Llama (tests/trainer/model/hf_parity.py); the engine loads it from the folder
transformers saved, as it loads any checkpoint our stages export.
"""

from __future__ import annotations

import tempfile

import pytest
import torch

from llm_platform.trainer.inference import BeamSearchParams, EngineConfig, LLMEngine, SamplingParams
from llm_platform.trainer.inference.sampling import apply_min_p, apply_top_k, apply_top_p
from tests.trainer.model.hf_parity import build_hf_model

transformers = pytest.importorskip("transformers")

PROMPTS = [[3, 17, 42, 7, 99], [11] * 3 + [5, 6, 7, 8, 9, 10, 12], [64, 1]]
NEW_TOKENS = 12


@pytest.fixture(scope="module")
def models():
    hf = build_hf_model("llama-gqa4-geglu-tanh").eval()
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        engine = LLMEngine.from_pretrained(folder, device="cpu", config=EngineConfig(block_size=4))
    engine.eos_token_ids.clear()
    return hf, engine


def _hf_generate(hf, prompt: list[int], **kwargs) -> list[int]:
    out = hf.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, **kwargs)
    return out[0, len(prompt) :].tolist()


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"repetition_penalty": 1.5},
        {"repetition_penalty": 0.6},
        {"no_repeat_ngram_size": 2},
        {"repetition_penalty": 1.2, "no_repeat_ngram_size": 3},
    ],
    ids=["plain", "rep-1.5", "rep-0.6", "no-repeat-2", "rep-and-no-repeat"],
)
def test_greedy_equals_transformers(models, options):
    hf, engine = models
    outs = engine.generate(PROMPTS, SamplingParams(max_tokens=NEW_TOKENS, temperature=0, **options))
    for prompt, out in zip(PROMPTS, outs, strict=True):
        assert out.outputs[0].token_ids == _hf_generate(hf, prompt, do_sample=False, **options)


@pytest.mark.parametrize(
    "options",
    [
        {"temperature": 0.8},
        {"temperature": 1.3, "top_k": 5},
        {"temperature": 1.0, "top_p": 0.7},
        {"temperature": 0.9, "min_p": 0.2},
        {"temperature": 1.1, "top_k": 20, "top_p": 0.9, "min_p": 0.05, "repetition_penalty": 1.3},
    ],
    ids=["temperature", "top-k", "top-p", "min-p", "all"],
)
def test_seeded_sampling_equals_transformers(models, options):
    """Same seed, same filters: the same draws from the same distribution (transformers samples from the global
    generator; the engine from the request's own, seeded alike)."""
    hf, engine = models
    prompt = PROMPTS[0]
    out = engine.generate([prompt], SamplingParams(max_tokens=NEW_TOKENS, seed=1234, **options))[0]
    torch.manual_seed(1234)
    assert out.outputs[0].token_ids == _hf_generate(
        hf, prompt, do_sample=True, top_k=options.pop("top_k", 0), **options
    )


def test_filters_keep_what_transformers_keeps():
    from transformers.generation.logits_process import MinPLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(0)) * 3
    ids = torch.zeros(6, 1, dtype=torch.long)
    for k in (1, 3, 50):
        ours = apply_top_k(logits, torch.full((6,), k))
        assert torch.equal(ours, TopKLogitsWarper(k)(ids, logits.clone()))
    for p in (0.1, 0.5, 0.95):
        assert torch.equal(apply_top_p(logits, torch.full((6,), p)), TopPLogitsWarper(p)(ids, logits.clone()))
    for m in (0.0, 0.1, 0.9):
        assert torch.equal(apply_min_p(logits, torch.full((6,), m)), MinPLogitsWarper(m)(ids, logits.clone()))


@pytest.mark.parametrize(
    ("length_penalty", "early_stopping", "no_repeat", "repetition"),
    [
        (1.0, False, 0, 1.0),
        (2.0, True, 0, 1.0),
        (-1.0, False, 2, 1.0),
        (0.5, True, 0, 1.4),
        (1.0, False, 0, 0.7),
        (1.5, "never", 0, 1.0),
    ],
)
def test_beam_search_equals_transformers(models, length_penalty, early_stopping, no_repeat, repetition):
    hf, engine = models
    prompt = PROMPTS[0]
    # an end token the model likes early, so that hypotheses finish at different lengths
    with torch.no_grad():
        end = int(hf(torch.tensor([prompt])).logits[0, -1].topk(3).indices[1])
    params = BeamSearchParams(
        num_beams=4,
        max_tokens=NEW_TOKENS,
        length_penalty=length_penalty,
        early_stopping=early_stopping,
        num_return_sequences=3,
        no_repeat_ngram_size=no_repeat,
        repetition_penalty=repetition,
        stop_token_ids=(end,),
    )
    ours = engine.beam_search(prompt, params)
    ref = hf.generate(
        torch.tensor([prompt]),
        max_new_tokens=NEW_TOKENS,
        num_beams=4,
        length_penalty=length_penalty,
        early_stopping=early_stopping,
        num_return_sequences=3,
        no_repeat_ngram_size=no_repeat,
        repetition_penalty=repetition,
        eos_token_id=end,
        pad_token_id=end,
        do_sample=False,
        output_scores=True,
        return_dict_in_generate=True,
    )
    for beam, sequence, score in zip(ours, ref.sequences, ref.sequences_scores, strict=True):
        tokens = sequence[len(prompt) :].tolist()
        if end in tokens:
            tokens = tokens[: tokens.index(end) + 1]
        assert beam.token_ids == tokens
        assert beam.cumulative_logprob == pytest.approx(float(score), abs=1e-4)
