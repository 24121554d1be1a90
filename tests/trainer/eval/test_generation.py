"""Generation for lm-eval's `generate_until`: greedy tokens equal transformers' `generate`, and stop strings stop it."""

from __future__ import annotations

import pytest
import torch

from llm_platform.trainer.eval.generation import Decoding, cut_at_stop, generate_until
from llm_platform.trainer.model.hf import load_pretrained
from llm_platform.trainer.tokenizer import Tokenizer

from .stops import first_stop

PROMPTS = ["def parse(text):\n    ", "class Formatter:", "import os\nimport sys\n\n"]


@pytest.fixture(scope="module")
def loaded(checkpoint):
    return load_pretrained(checkpoint), Tokenizer.load(checkpoint)


def test_greedy_tokens_match_transformers_generate(checkpoint, loaded):
    from transformers import AutoModelForCausalLM

    model, tokenizer = loaded
    reference = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    for prompt in PROMPTS:
        ids = tokenizer.encode(prompt, add_bos=True)
        out = reference.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=24, pad_token_id=0)
        expected = tokenizer.decode(out[0, len(ids) :].tolist(), skip_special=True)
        assert generate_until(model, tokenizer, ids, Decoding(max_new_tokens=24)) == expected


def test_generation_ends_before_the_first_stop_string(loaded):
    model, tokenizer = loaded
    ids = tokenizer.encode(PROMPTS[0], add_bos=True)
    free = generate_until(model, tokenizer, ids, Decoding(max_new_tokens=40))
    stop = first_stop(free)
    stopped = generate_until(model, tokenizer, ids, Decoding(max_new_tokens=40, stops=("never written", stop)))
    assert stopped == free[: free.index(stop)]


def test_cut_at_stop_takes_the_earliest_of_several():
    assert cut_at_stop("answer: 42\n\nQuestion", ("Question", "\n\n")) == ("answer: 42", True)
    assert cut_at_stop("no stop here", ("\n\n",)) == ("no stop here", False)
    assert cut_at_stop("empty stops are ignored", ("",)) == ("empty stops are ignored", False)


def test_sampling_is_reproducible_for_a_seed_and_differs_from_greedy(loaded):
    model, tokenizer = loaded
    ids = tokenizer.encode(PROMPTS[1], add_bos=True)
    sampled = Decoding(max_new_tokens=16, do_sample=True, temperature=1.5, seed=3)
    first = generate_until(model, tokenizer, ids, sampled)
    assert first == generate_until(model, tokenizer, ids, sampled)
    assert first != generate_until(model, tokenizer, ids, Decoding(max_new_tokens=16))
