"""The one BOS rule every part of the platform follows: a sequence starts with BOS whenever the vocabulary has one.

Pretraining data (each document, `stages/tokenizer.py`), fine-tuning data (`data/sft.py`), the chat template
(`{{ bos_token }}`), the exported tokenizer (its `tokenizer.json` post-processor prepends BOS and
`tokenizer_config.json` says `add_bos_token: true`, so transformers, vLLM and lm-eval add it too), evaluation and the
inference server all agree, so the model is never asked to continue a sequence shaped unlike the ones it learned on
(a model trained without BOS scores the first tokens of every document far worse when served with one).
"""

from __future__ import annotations

from .tokenizer import Tokenizer


def adds_bos(tokenizer: Tokenizer) -> bool:
    return tokenizer.bos_id is not None


def encode_text(tokenizer: Tokenizer, text: str) -> list[int]:
    """Ids of a plain-text sequence (a document, a completion prompt) as training saw them: BOS first, if any."""
    return tokenizer.encode(text, add_bos=adds_bos(tokenizer))


def encode_texts(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer.encode_batch(texts, add_bos=adds_bos(tokenizer))
