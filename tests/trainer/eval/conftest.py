"""A tiny exported checkpoint for the benchmark tests, and the two lm-eval models that read it (ours and HFLM)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_platform.trainer.model import Transformer, get_config
from llm_platform.trainer.model.hf import save_pretrained
from llm_platform.trainer.tokenizer import train_bpe
from tests.trainer.model.hf_parity import randomize
from tests.trainer.train.fixtures import stdlib_texts

NEEDS_LM_EVAL = "the lm-eval tests need the eval extra: pip install 'llm-platform[eval]'"


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """A 2-layer Llama with random weights everywhere (norms included, so that no tensor hides behind ones) and a
    byte-level BPE trained on standard-library sources, saved in HF format; 128 positions, so long prompts are cut."""
    folder = tmp_path_factory.mktemp("checkpoint")
    tokenizer = train_bpe(stdlib_texts()[:120], 384)
    model = Transformer(get_config("llama-tiny", vocab_size=tokenizer.vocab_size, max_seq_len=128))
    randomize(model, seed=0)
    save_pretrained(model, folder)
    tokenizer.save(folder)
    return folder


@pytest.fixture(scope="session")
def ours(checkpoint):
    pytest.importorskip("lm_eval", reason=NEEDS_LM_EVAL)
    from llm_platform.trainer.eval.lm_eval_model import PlatformLM

    return PlatformLM.from_pretrained(checkpoint, batch_size=4)


@pytest.fixture(scope="session")
def hflm(checkpoint):
    """lm-eval's own transformers model on the same folder: the reference ours is held to."""
    pytest.importorskip("lm_eval", reason=NEEDS_LM_EVAL)
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(checkpoint), device="cpu", dtype="float32", batch_size=4)
