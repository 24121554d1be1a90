"""The `tokenizer` stage: train a byte-level BPE on the corpus (or import one), then tokenize and pack every split."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

from llm_platform.trainer.data.corpus import iter_corpus
from llm_platform.trainer.data.pack import write_meta, write_split
from llm_platform.trainer.tokenizer import Tokenizer, train_bpe
from llm_platform.trainer.tokenizer.bos import encode_texts
from llm_platform.trainer.tokenizer.stats import compression_stats

from .context import StageContext, fetch_uri

BATCH = 256


def run(ctx: StageContext, out: Path) -> dict:
    spec = ctx.stage.tokenizer
    corpus = ctx.input("corpus")
    if spec.from_:
        tokenizer = Tokenizer.load(fetch_uri(spec.from_, ctx.store))
    else:
        texts = _limit_bytes(iter_corpus(corpus, "train"), spec.train_max_bytes)
        ctx.console.print(f"[bold]tokenizer[/]: training byte-level BPE, vocab {spec.vocab_size}")
        tokenizer = train_bpe(texts, spec.vocab_size, pattern=spec.pattern, min_frequency=spec.min_frequency)
    tokenizer.save(out / "tokenizer")
    counts: dict[str, int] = {"vocab_size": tokenizer.vocab_size}
    for split in ("train", "val"):
        docs = _encode_stream(tokenizer, iter_corpus(corpus, split))
        counts |= write_split(out / "tokens", split, docs, tokenizer.eos_id, tokenizer.vocab_size)
    write_meta(out / "tokens", tokenizer.vocab_size, tokenizer.eos_id, counts)
    ctx.console.print(
        f"[bold]tokenizer[/]: {counts['train_tokens']:,} train tokens, {counts['val_tokens']:,} val tokens"
    )
    held_out = compression_stats(tokenizer, iter_corpus(corpus, "val")).as_dict()
    return counts | {
        f"val_{k}": round(held_out[k], 4) for k in ("bytes_per_token", "tokens_per_word", "unknown_byte_rate")
    }


def _encode_stream(tokenizer: Tokenizer, texts: Iterator[str]) -> Iterator[list[int]]:
    while batch := list(itertools.islice(texts, BATCH)):
        yield from encode_texts(tokenizer, batch)  # BOS first, as everything downstream expects (tokenizer/bos.py)


def _limit_bytes(texts: Iterator[str], limit: int | None) -> Iterator[str]:
    total = 0
    for text in texts:
        if limit is not None and total >= limit:
            return
        total += len(text.encode())
        yield text
