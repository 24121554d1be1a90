from pathlib import Path

import pytest

from llm_platform.trainer.tokenizer import Tokenizer, train_bpe

SHARED = Path(__file__).resolve().parents[3] / ".." / "shared"
DATA = SHARED / "data"

INLINE_CORPUS = [
    "The quick brown fox jumps over the lazy dog. It's 2024 and we'll train 123 tokenizers!\n",
    "Der schnelle braune Fuchs springt über den faulen Hund. Grüße aus Köln.\n",
    "Le renard brun rapide saute par-dessus le chien paresseux. Ça va très bien.\n",
    "快速的棕色狐狸跳过了懒狗。我们喜欢分词器。\n",
    "שלום עולם, مرحبا بالعالم 👋🌍 emoji and RTL text\n",
    "def encode(text: str) -> list[int]:\n    return [ord(c) for c in text]\n",
] * 20


def read_shared_lines(*relative: str) -> list[str]:
    """Lines of files under ../shared/data; skips the test when that folder is absent."""
    paths = [DATA / r for r in relative]
    missing = [p for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"shared data not found ({missing[0]}); these tests need the ../shared/data folder beside the repo")
    return [line for p in paths for line in p.read_text(encoding="utf-8").splitlines(keepends=True)]


TRAIN_FILES = ["corpus/tinyshakespeare/input.txt", "flores200/dev/deu_Latn.dev", "flores200/dev/fra_Latn.dev"]
HELD_OUT_FILES = [
    "corpus/gutenberg/11-0.txt",
    "corpus/gutenberg/84-0.txt",
    "flores200/devtest/eng_Latn.devtest",
    "flores200/devtest/deu_Latn.devtest",
    "flores200/devtest/fra_Latn.devtest",
    "wikitext2/valid.txt",
]


@pytest.fixture(scope="session")
def shared_texts():
    """`shared_texts(*relative_paths)`: the lines of those files under ../shared/data, or skip when it is absent."""
    return read_shared_lines


@pytest.fixture(scope="session")
def held_out_texts() -> list[str]:
    """Text the shared tokenizer never saw: Gutenberg books, FLORES devtest in three languages, WikiText-2."""
    return read_shared_lines(*HELD_OUT_FILES)


ALL_TEXT_FILES = [
    *(f"corpus/gutenberg/{name}" for name in ("1342-0.txt", "1661.txt", "84-0.txt", "11-0.txt", "345.txt")),
    "corpus/tinyshakespeare/input.txt",
    *(f"flores200/{split}/{lang}_Latn.{split}" for split in ("dev", "devtest") for lang in ("eng", "deu", "fra")),
    "wikitext2/valid.txt",
]


@pytest.fixture(scope="session")
def all_shared_texts() -> list[str]:
    """Every line of every text corpus in ../shared/data (6.7 MB): what the id-parity tests run on."""
    return read_shared_lines(*ALL_TEXT_FILES)


@pytest.fixture(scope="session")
def inline_corpus() -> list[str]:
    return INLINE_CORPUS


@pytest.fixture(scope="session")
def tiny_tokenizer() -> Tokenizer:
    """A 600-id byte-level BPE trained on a few multilingual lines: no shared data needed."""
    return train_bpe(INLINE_CORPUS, 600)


@pytest.fixture(scope="session")
def shared_tokenizer() -> Tokenizer:
    """A 4096-id vocabulary trained on Shakespeare plus German and French FLORES sentences."""
    return train_bpe(read_shared_lines(*TRAIN_FILES), 4096)


@pytest.fixture(scope="session")
def saved_shared_tokenizer(shared_tokenizer, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("shared_tokenizer")
    shared_tokenizer.save(directory)
    return directory
