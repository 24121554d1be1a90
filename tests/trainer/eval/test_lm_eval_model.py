"""The lm-eval adapter's own rules: tokenization as lm-eval's HFLM does it on the same folder, where BOS comes from,
generation settings, and the error when lm-eval is not installed."""

from __future__ import annotations

import importlib
import json
import sys

import pytest

pytest.importorskip("lm_eval", reason="the lm-eval tests need the eval extra: pip install 'llm-platform[eval]'")

from lm_eval.api.instance import Instance  # noqa: E402

from llm_platform.trainer.eval.lm_eval_model import hf_adds_bos  # noqa: E402
from llm_platform.trainer.tokenizer import Tokenizer  # noqa: E402

PAIRS = [
    ("Question: what is 2 + 2?\nAnswer:", " 4"),
    ("The cat sat on the ", "mat."),  # trailing space moves to the continuation
    ("def f(x):\n    return", " x  + 1\n"),
]


def test_encoding_matches_hflms(ours, hflm):
    """BOS prepended (not twice), special-token text read as the special token, as AutoTokenizer under HFLM does."""
    texts = ["plain text", "<|bos|>already starts with BOS", "a <|eos|> in the middle", ""]
    for text in texts:
        assert ours.tok_encode(text) == hflm.tok_encode(text), text
        assert ours.tok_encode(text, add_special_tokens=False) == hflm.tok_encode(text, add_special_tokens=False)
    assert ours.tok_encode("x")[0] == ours.tokenizer.bos_id


def test_context_and_continuation_split_as_hflm_splits_them(ours, hflm):
    for context, continuation in PAIRS:
        assert ours._encode_pair(context, continuation) == hflm._encode_pair(context, continuation)


def test_an_empty_context_is_conditioned_as_hflm_conditions_it(ours, hflm):
    requests = [Instance("loglikelihood", {}, ("", text), i) for i, text in enumerate(["def main():", "x"])]
    mine = ours.loglikelihood(requests, disable_tqdm=True)
    reference = hflm.loglikelihood(requests, disable_tqdm=True)
    assert [m[0] for m in mine] == pytest.approx([r[0] for r in reference], abs=1e-4)


def test_bos_follows_the_folders_tokenizer_config(checkpoint, tmp_path):
    tokenizer = Tokenizer.load(checkpoint)
    assert hf_adds_bos(checkpoint, tokenizer)  # our tokenizer.json's post-processor prepends it
    for file in checkpoint.iterdir():
        (tmp_path / file.name).write_bytes(file.read_bytes())
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config | {"add_bos_token": False}))
    assert not hf_adds_bos(tmp_path, tokenizer)


def test_generation_settings_map_to_decoding(ours):
    decoding = ours.decoding({"until": "\n\n", "max_new_tokens": 7, "do_sample": True, "temperature": 0.5})
    assert (decoding.stops, decoding.max_new_tokens, decoding.greedy, decoding.temperature) == (
        ("\n\n",),
        7,
        False,
        0.5,
    )
    assert ours.decoding({"until": ["Q:"]}).greedy and ours.decoding({}).max_new_tokens == 256


def test_unknown_generation_settings_are_refused(ours):
    with pytest.raises(ValueError, match=r"generation settings \['num_beams'\] are not supported"):
        ours.decoding({"until": ["\n"], "num_beams": 4})


def test_without_lm_eval_the_error_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "lm_eval" or m.startswith("lm_eval.")]:
        monkeypatch.setitem(sys.modules, name, None)  # how Python marks a module as not importable
    monkeypatch.delitem(sys.modules, "llm_platform.trainer.eval.lm_eval_model")
    with pytest.raises(ImportError, match=r"needs the 'lm_eval' package .*pip install 'llm-platform\[eval\]'"):
        importlib.import_module("llm_platform.trainer.eval.lm_eval_model")


def test_a_continuation_longer_than_the_context_names_it(ours):
    request = Instance("loglikelihood", {}, ("Q:", " word" * 200), 0)
    with pytest.raises(ValueError, match=r"tokens \(' word word.*\) does not fit the 128-token context"):
        ours.loglikelihood([request], disable_tqdm=True)
