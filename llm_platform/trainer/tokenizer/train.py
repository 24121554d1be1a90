"""Training byte-level BPE with the Rust `tokenizers` trainer, laid out as tiktoken ranks.

The trainer learns merges; we then give the 256 bytes ranks 0-255 (in byte order), the learned tokens ranks in the
order they were learned, and the special tokens the ids after them, as GPT-4 and Llama 3 vocabularies do. If the corpus
runs out of pairs seen `min_frequency` times before `vocab_size` is reached, the rest becomes reserved special tokens,
so the vocabulary always has exactly `vocab_size` ids.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, pre_tokenizers, trainers

from llm_platform.trainer.tokenizer.backends.tiktoken_ranks import TiktokenBackend
from llm_platform.trainer.tokenizer.byte_level import token_string_to_bytes
from llm_platform.trainer.tokenizer.corpus import OnDecodeError, iter_texts
from llm_platform.trainer.tokenizer.hf_json import byte_level_pre_tokenizer
from llm_platform.trainer.tokenizer.patterns import resolve_pattern
from llm_platform.trainer.tokenizer.specials import (
    DEFAULT_SPECIAL_TOKENS,
    check_special_tokens,
    reserved_tokens,
    roles_for,
)
from llm_platform.trainer.tokenizer.tokenizer import Tokenizer

logger = logging.getLogger(__name__)


def checked_texts(texts: Iterable[str]) -> Iterator[str]:
    """Pass texts through, stopping with the index of the first one that is not a str."""
    if isinstance(texts, str):
        raise TypeError("texts must be an iterable of strings, not one string; wrap it in a list")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}")
        yield text


def learn_ranks(texts: Iterable[str], num_ranks: int, pattern: str, min_frequency: int) -> dict[bytes, int]:
    """Learn up to `num_ranks` byte-level tokens (256 bytes included) from `texts`, as tiktoken ranks."""
    hf = HFTokenizer(models.BPE(ignore_merges=True))
    hf.pre_tokenizer = byte_level_pre_tokenizer(pattern)
    trainer = trainers.BpeTrainer(
        vocab_size=num_ranks,
        min_frequency=min_frequency,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator(checked_texts(texts), trainer)
    learned = sorted(hf.get_vocab().items(), key=lambda item: item[1])
    ranks = {bytes([b]): b for b in range(256)}
    for token, _ in learned:
        data = token_string_to_bytes(token)
        if data not in ranks:
            ranks[data] = len(ranks)
    return ranks


def train_bpe(
    texts: Iterable[str],
    vocab_size: int,
    *,
    special_tokens: list[str] | None = None,
    pattern: str | None = None,
    min_frequency: int = 2,
    num_reserved: int = 0,
    chat_template: str | None = None,
) -> Tokenizer:
    """Train a byte-level BPE tokenizer of exactly `vocab_size` ids (special tokens included).

    `special_tokens` default to bos/eos/pad/unk and the chat role tokens (`specials.DEFAULT_SPECIAL_TOKENS`);
    `num_reserved` adds `<|reserved_N|>` slots; `pattern` is a regex or a name (`llama3` default, `gpt2`, `o200k`).
    Any Unicode trains and encodes: text is split into UTF-8 bytes, so nothing is ever unknown.
    """
    specials = check_special_tokens(list(DEFAULT_SPECIAL_TOKENS if special_tokens is None else special_tokens))
    specials += reserved_tokens(num_reserved)
    num_ranks = vocab_size - len(specials)
    if num_ranks < 256:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: 256 byte tokens + {len(specials)} special tokens need at least "
            f"{256 + len(specials)}"
        )
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
    regex = resolve_pattern(pattern)
    ranks = learn_ranks(texts, num_ranks, regex, min_frequency)
    reserved_start = sum(token.startswith("<|reserved_") for token in specials)
    if len(ranks) < num_ranks:
        logger.warning(
            "the corpus has no more pairs seen %d times after %d tokens; %d of the %d ids are reserved specials "
            "(more text or a lower min_frequency gives more learned tokens)",
            min_frequency,
            len(ranks),
            num_ranks - len(ranks),
            vocab_size,
        )
    specials += reserved_tokens(num_ranks - len(ranks), start=reserved_start)
    special_ids = {token: len(ranks) + i for i, token in enumerate(specials)}
    backend = TiktokenBackend(ranks, regex, special_ids)
    return Tokenizer(backend, roles=roles_for(special_ids), chat_template=chat_template)


def train_bpe_from_files(
    sources: str | Path | Iterable[str | Path],
    vocab_size: int,
    *,
    jsonl_field: str = "text",
    on_decode_error: OnDecodeError = "error",
    **options,
) -> Tokenizer:
    """`train_bpe` on files or globs (text, JSONL with `jsonl_field`, gzip of either); see `corpus.iter_texts`."""
    return train_bpe(
        iter_texts(sources, jsonl_field=jsonl_field, on_decode_error=on_decode_error), vocab_size, **options
    )
