"""Tokenizer throughput and compression: ours against HF `tokenizers` and `tiktoken` in one run.

    python bench/tokenizer.py                        # quickstart corpus (this Python's stdlib *.py), 32K vocab
    python bench/tokenizer.py --corpus shared        # ../shared/data text corpora instead
    python bench/tokenizer.py --vocab-size 128000 --sentencepiece-mb 0

Every 10th document is held out: training uses the rest, encoding speed and compression are measured on the held-out
part. Training MB/s: `train_bpe` (HF trainer + tiktoken layout) against the bare HF `BpeTrainer` with the same
pre-tokenizer, and optionally SentencePiece BPE on a prefix of the data. Encode MB/s/core: one thread encoding
document by document, then a parallel batch over all cores (MB/s divided by the cores used). Ids are checked equal.
"""

from __future__ import annotations

import argparse
import os
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import tiktoken
import tokenizers
from tokenizers import pre_tokenizers, trainers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_platform.trainer.tokenizer import Tokenizer, train_bpe  # noqa: E402
from llm_platform.trainer.tokenizer.hf_json import byte_level_pre_tokenizer  # noqa: E402
from llm_platform.trainer.tokenizer.patterns import LLAMA3  # noqa: E402
from llm_platform.trainer.tokenizer.specials import DEFAULT_SPECIAL_TOKENS  # noqa: E402
from llm_platform.trainer.tokenizer.stats import compression_stats  # noqa: E402
from llm_platform.trainer.tokenizer.train_sentencepiece import train_sentencepiece  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def stdlib_documents() -> list[str]:
    """The quickstart corpus: this Python's standard-library sources (site-packages excluded)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts and p.is_file())
    return [p.read_text(encoding="utf-8", errors="replace") for p in paths]


def shared_documents() -> list[str]:
    files = sorted((SHARED_DATA / "corpus").rglob("*.txt")) + [SHARED_DATA / "wikitext2" / "valid.txt"]
    files += sorted((SHARED_DATA / "flores200").rglob("*_Latn.*"))
    if not files or not all(f.exists() for f in files):
        sys.exit(f"shared data not found under {SHARED_DATA}")
    paragraphs = []
    for f in files:
        text = f.read_text(encoding="utf-8")
        paragraphs += [text[i : i + 4000] for i in range(0, len(text), 4000)]
    return paragraphs


def megabytes(texts: list[str]) -> float:
    return sum(len(t.encode("utf-8")) for t in texts) / 1e6


def best_seconds(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Fastest of `repeat` timings for each run, taking turns so that load from other processes hits all alike."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def bare_hf_training(texts: list[str], vocab_size: int) -> tokenizers.Tokenizer:
    """The baseline: HF's BpeTrainer with the same byte-level pre-tokenizer and special tokens, nothing else."""
    hf = tokenizers.Tokenizer(tokenizers.models.BPE())
    hf.pre_tokenizer = byte_level_pre_tokenizer(LLAMA3)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=DEFAULT_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator(texts, trainer)
    return hf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=["stdlib", "shared"], default="stdlib")
    parser.add_argument("--vocab-size", type=int, default=32_000)
    parser.add_argument("--sentencepiece-mb", type=float, default=4.0, help="MB for the SentencePiece run; 0 skips it")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=3, help="timings per encoder (best is kept)")
    parser.add_argument("--train-repeat", type=int, default=2, help="timings per trainer (best is kept)")
    args = parser.parse_args()

    docs = stdlib_documents() if args.corpus == "stdlib" else shared_documents()
    train_docs = [d for i, d in enumerate(docs) if i % 10]
    held_out = [d for i, d in enumerate(docs) if i % 10 == 0]
    train_mb, held_mb = megabytes(train_docs), megabytes(held_out)
    print(f"corpus {args.corpus}: {len(docs):,} documents; train {train_mb:.1f} MB, held out {held_mb:.1f} MB")
    print(f"machine: {os.cpu_count()} cores; vocab {args.vocab_size:,}; tokenizers {tokenizers.__version__}, "
          f"tiktoken {tiktoken.__version__}")  # fmt: skip

    print("\n== training (MB/s of training text)")
    trained: list[Tokenizer] = []
    training = {
        "ours": lambda: trained.append(train_bpe(train_docs, args.vocab_size)),
        "tokenizers": lambda: bare_hf_training(train_docs, args.vocab_size),
    }
    train_seconds = best_seconds(training, args.train_repeat)
    ours, ours_s, hf_s = trained[-1], train_seconds["ours"], train_seconds["tokenizers"]
    print(f"ours train_bpe            {train_mb / ours_s:8.2f} MB/s  ({ours_s:.1f} s)")
    print(f"tokenizers BpeTrainer     {train_mb / hf_s:8.2f} MB/s  ({hf_s:.1f} s)   ours/baseline {hf_s / ours_s:.2f}x")
    if args.sentencepiece_mb > 0:
        prefix, size = [], 0.0
        for d in train_docs:
            if size >= args.sentencepiece_mb:
                break
            prefix.append(d)
            size += len(d.encode("utf-8")) / 1e6
        start = time.perf_counter()
        train_sentencepiece(prefix, min(args.vocab_size, 8000), input_sentence_size=0)
        sp_s = time.perf_counter() - start
        print(f"sentencepiece BPE         {size / sp_s:8.2f} MB/s  ({sp_s:.1f} s on the first {size:.1f} MB, vocab "
              f"{min(args.vocab_size, 8000):,})")  # fmt: skip

    with tempfile.TemporaryDirectory() as folder:
        ours.save(folder)
        reference_hf = tokenizers.Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
        ranks_owner = Tokenizer.load(Path(folder) / "tokenizer.tiktoken")
    reference_tiktoken = ranks_owner.backend.new_encoding()

    print(f"\n== encoding the held-out {held_mb:.1f} MB (same vocabulary in all three)")
    single = {
        "ours encode": lambda: [ours.encode(d) for d in held_out],
        "tiktoken encode_ordinary": lambda: [reference_tiktoken.encode_ordinary(d) for d in held_out],
        "tokenizers encode": lambda: [reference_hf.encode(d, add_special_tokens=False) for d in held_out],
    }
    n = args.threads
    batch = {
        "ours encode_batch": lambda: ours.encode_batch(held_out, num_threads=n),
        "tiktoken encode_ordinary_batch": lambda: reference_tiktoken.encode_ordinary_batch(held_out, num_threads=n),
        "tokenizers encode_batch": lambda: reference_hf.encode_batch(held_out, add_special_tokens=False),
    }
    rates = {name: held_mb / seconds for name, seconds in best_seconds(single, args.repeat).items()}
    for name, rate in rates.items():
        print(f"1 thread   {name:32s} {rate:8.2f} MB/s/core")
    for name, seconds in best_seconds(batch, args.repeat).items():
        rate = held_mb / seconds
        print(f"{n} threads  {name:32s} {rate:8.2f} MB/s = {rate / n:6.2f} MB/s/core")
    ratio_hf = rates["ours encode"] / rates["tokenizers encode"]
    ratio_tt = rates["ours encode"] / rates["tiktoken encode_ordinary"]
    print(f"ours / tokenizers (1 thread): {ratio_hf:.2f}x; ours / tiktoken (1 thread): {ratio_tt:.2f}x")

    ids = ours.encode_batch(held_out)
    same_hf = ids == [e.ids for e in reference_hf.encode_batch(held_out, add_special_tokens=False)]
    same_tt = ids == reference_tiktoken.encode_ordinary_batch(held_out)
    print(f"ids identical: tokenizers {same_hf}, tiktoken {same_tt}")

    stats = compression_stats(ours, held_out)
    print(f"\n== compression of the {args.vocab_size:,} vocab on the held-out text")
    print(
        f"bytes/token {stats.bytes_per_token:.3f}   tokens/word {stats.tokens_per_word:.3f}   unknown-byte rate "
        f"{stats.unknown_byte_rate:.4f}   ({stats.tokens:,} tokens, {stats.bytes:,} bytes)"
    )


if __name__ == "__main__":
    main()
