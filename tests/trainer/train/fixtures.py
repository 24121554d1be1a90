"""A tiny real corpus for the training tests: Python standard-library sources, a byte-level BPE trained on them,
and the packed token files, committed to a store as the `tokenizer` stage's artifact."""

from __future__ import annotations

import argparse
import collections
import inspect
import json
import textwrap
from pathlib import Path

from llm_platform.api import parse_job
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.data.pack import write_meta, write_split
from llm_platform.trainer.tokenizer import train_bpe

MODEL = {"dim": 64, "n_layers": 2, "n_heads": 4, "num_kv_heads": 2, "ffn_dim": 128, "max_seq_len": 64}


def stdlib_texts() -> list[str]:
    """Real text present on every machine: the source of a few standard-library modules, one per paragraph."""
    texts = []
    for module in (argparse, collections, inspect, json.decoder, json.encoder, textwrap):
        source = Path(module.__file__).read_text()
        texts.extend(p for p in source.split("\n\n\n") if len(p) > 200)
    return texts


def commit_tokens(store: ArtifactStore, vocab_size: int = 384) -> dict:
    """Train the tokenizer, pack train/val splits, commit them as the `tokenizer` stage; returns the meta."""
    texts = stdlib_texts()
    tokenizer = train_bpe(texts[:200], vocab_size)
    split = len(texts) * 9 // 10
    with store.writer("tokenizer") as folder:
        tokenizer.save(folder / "tokenizer")
        counts = {}
        for name, docs in (("train", texts[:split]), ("val", texts[split:])):
            counts |= write_split(folder / "tokens", name, tokenizer.encode_batch(docs), tokenizer.eos_id, vocab_size)
        write_meta(folder / "tokens", tokenizer.vocab_size, tokenizer.eos_id, counts)
    return json.loads((store.fetch("tokenizer") / "tokens" / "meta.json").read_text())


def pretrain_job(train: dict, model: dict | None = None, name: str = "tiny"):
    return parse_job(
        {
            "apiVersion": "llmplatform.dev/v1alpha1",
            "kind": "LLMJob",
            "metadata": {"name": name},
            "spec": {
                "model": {"preset": "llama-tiny", "overrides": model or MODEL},
                "stages": [
                    {"name": "data", "kind": "data", "data": {"sources": [{"type": "stdlib"}]}},
                    {"name": "tokenizer", "kind": "tokenizer", "needs": ["data"]},
                    {"name": "pretrain", "kind": "pretrain", "needs": ["tokenizer"], "train": train},
                ],
            },
        }
    )


def corpus_token_file(folder: Path, vocab_size: int = 384) -> Path:
    """The stdlib corpus, tokenized and concatenated with EOS after each document, as a raw uint16 file."""
    texts = stdlib_texts()
    tokenizer = train_bpe(texts[:200], vocab_size)
    write_split(folder, "train", tokenizer.encode_batch(texts), tokenizer.eos_id, vocab_size)
    return folder / "train.bin"
