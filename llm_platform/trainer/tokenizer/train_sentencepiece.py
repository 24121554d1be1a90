"""The alternative trainer: SentencePiece BPE or unigram with byte fallback, read back through `sentencepiece`.

Defaults follow Llama 2's SentencePiece setup (identity normalization, byte fallback, digits split, whitespace kept),
so text outside the learned characters becomes `<0xNN>` byte pieces instead of `<unk>`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import sentencepiece as spm

from llm_platform.trainer.tokenizer.backends.sentencepiece_model import SentencePieceBackend
from llm_platform.trainer.tokenizer.specials import (
    BOS,
    DEFAULT_SPECIAL_TOKENS,
    EOS,
    PAD,
    UNK,
    check_special_tokens,
    reserved_tokens,
)
from llm_platform.trainer.tokenizer.tokenizer import Tokenizer
from llm_platform.trainer.tokenizer.train import checked_texts


def _sentences(texts: Iterable[str]) -> Iterator[str]:
    """SentencePiece trains on sentences (lines); empty lines carry nothing."""
    for text in checked_texts(texts):
        for line in text.splitlines():
            if line.strip():
                yield line


def train_sentencepiece(
    texts: Iterable[str],
    vocab_size: int,
    *,
    model_type: Literal["bpe", "unigram"] = "bpe",
    special_tokens: list[str] | None = None,
    num_reserved: int = 0,
    byte_fallback: bool = True,
    character_coverage: float = 0.9995,
    chat_template: str | None = None,
    **trainer_options: Any,
) -> Tokenizer:
    """Train a SentencePiece model of `vocab_size` pieces; `trainer_options` go to `SentencePieceTrainer.train`.

    `<|bos|>`, `<|eos|>`, `<|pad|>`, `<|unk|>` take SentencePiece's bos/eos/pad/unk slots (unk always exists);
    the other special tokens become control symbols, which text can only produce with `allow_special=True`.
    """
    specials = check_special_tokens(list(DEFAULT_SPECIAL_TOKENS if special_tokens is None else special_tokens))
    specials += reserved_tokens(num_reserved)
    meta = [token for token in (UNK, BOS, EOS, PAD) if token in specials or token == UNK]
    meta_ids = {token: meta.index(token) if token in meta else -1 for token in (UNK, BOS, EOS, PAD)}
    model = io.BytesIO()
    options = {
        "model_type": model_type,
        "vocab_size": vocab_size,
        "byte_fallback": byte_fallback,
        "character_coverage": character_coverage,
        "normalization_rule_name": "identity",
        "remove_extra_whitespaces": False,
        "split_digits": True,
        "allow_whitespace_only_pieces": True,
        "unk_piece": UNK,
        "bos_piece": BOS,
        "eos_piece": EOS,
        "pad_piece": PAD,
        "unk_id": meta_ids[UNK],
        "bos_id": meta_ids[BOS],
        "eos_id": meta_ids[EOS],
        "pad_id": meta_ids[PAD],
        "control_symbols": [token for token in specials if token not in meta],
        "num_threads": os.cpu_count() or 1,
        "minloglevel": 2,
        **trainer_options,
    }
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=_sentences(texts), model_writer=model, **options)
    except RuntimeError as err:
        raise ValueError(f"SentencePiece training failed: {err}") from None
    backend = SentencePieceBackend(model.getvalue())
    return Tokenizer(backend, roles=backend.role_tokens(), chat_template=chat_template)
