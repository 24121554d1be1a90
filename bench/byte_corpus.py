"""A byte-level corpus for `bench/train.py`'s quality phase, with no tokenizer to train: the five Gutenberg books, Tiny
Shakespeare and WikiText-2 valid from the shared data folder, cut into 40-paragraph documents, every 20th held out
for validation, each byte one token (vocab 257: the 256 bytes and an end-of-document token).

    python3 bench/byte_corpus.py ../shared/data .bench_data/bytes     # ~4.7M tokens, a few seconds
"""

from __future__ import annotations

import sys
from pathlib import Path

from llm_platform.trainer.data.pack import write_meta, write_split

EOS = 256


def documents(data: Path) -> list[str]:
    texts = [p.read_text(errors="replace") for p in sorted((data / "corpus" / "gutenberg").glob("*.txt"))]
    texts.append((data / "corpus" / "tinyshakespeare" / "input.txt").read_text())
    texts.append((data / "wikitext2" / "valid.txt").read_text())
    docs = []
    for text in texts:
        paragraphs = [p for p in text.split("\n\n") if p.strip()]
        docs += ["\n\n".join(paragraphs[i : i + 40]) for i in range(0, len(paragraphs), 40)]
    return docs


def main() -> None:
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    docs = [list(d.encode()) for d in documents(data)]
    counts = write_split(out, "train", (d for i, d in enumerate(docs) if i % 20), EOS, EOS + 1)
    counts |= write_split(out, "val", (d for i, d in enumerate(docs) if i % 20 == 0), EOS, EOS + 1)
    write_meta(out, EOS + 1, EOS, counts)
    print(counts)


if __name__ == "__main__":
    main()
