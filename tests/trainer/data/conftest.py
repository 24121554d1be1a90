"""Real text from ../shared/data for the data-pipeline tests; each loader skips the test when the folder is absent."""

from __future__ import annotations

import json
import re
import sysconfig
from functools import cache
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


def shared(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"needs {path} (the team's shared data folder beside the repository); absent here")
    return path


@cache
def _squad_paragraphs() -> tuple[str, ...]:
    data = json.loads(shared("squad_v1.1/dev-v1.1.json").read_text())
    return tuple(p["context"] for article in data["data"] for p in article["paragraphs"])


def squad_paragraphs(min_words: int = 0) -> list[str]:
    """Wikipedia paragraphs (SQuAD v1.1 dev contexts): clean encyclopedic English prose."""
    return [p for p in _squad_paragraphs() if len(p.split()) >= min_words]


def gutenberg_chunks(book: str = "1342-0.txt", paragraphs: int = 20) -> list[str]:
    """A Project Gutenberg novel cut into documents of `paragraphs` paragraphs (the PG header and footer dropped)."""
    text = shared(f"corpus/gutenberg/{book}").read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    start = text.find("*** START OF")
    end = text.find("*** END OF")
    body = text[text.find("\n", start) + 1 if start >= 0 else 0 : end if end >= 0 else None]
    paras = [" ".join(p.split()) for p in body.split("\n\n") if p.strip()]  # unwrapped, as web text is
    return ["\n\n".join(paras[i : i + paragraphs]) for i in range(0, len(paras), paragraphs)]


def shakespeare_chunks(chars: int = 2000) -> list[str]:
    text = shared("corpus/tinyshakespeare/input.txt").read_text()
    return [text[i : i + chars] for i in range(0, len(text), chars)]


def flores_lines(lang: str, split: str = "dev") -> list[str]:
    suffix = "dev" if split == "dev" else "devtest"
    return shared(f"flores200/{split}/{lang}.{suffix}").read_text(encoding="utf-8").splitlines()


def wikitext_articles() -> list[str]:
    text = shared("wikitext2/valid.txt").read_text(encoding="utf-8")
    return [a.strip() for a in re.split(r"\n = (?=[^=])", text) if len(a.split()) > 200]


def gsm8k_questions(split: str) -> list[str]:
    lines = shared(f"gsm8k/{split}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines]


def stdlib_code(n: int = 100) -> list[str]:
    """Python source files of this interpreter's standard library: real text that is not prose."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return [p.read_text(encoding="utf-8", errors="replace") for p in sorted(root.glob("*.py"))[:n]]
