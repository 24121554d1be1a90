"""Tokenizers: byte-level BPE training, HF / tiktoken / SentencePiece files with identical ids, chat templates.

tok = train_bpe(texts, vocab_size=32_000)          # or train_bpe_from_files("corpus/**/*.txt", 32_000)
ids = tok.encode("Hello", add_bos=True)
tok.save("out/")                                     # tokenizer.json, tokenizer.tiktoken, tokenizer_config.json
tok = Tokenizer.load("out/")                         # or a .tiktoken file or a SentencePiece .model
"""

from importlib import import_module

# name -> the submodule defining it, imported on first use (PEP 562): the spec layer imports `patterns` alone, and
# importing every backend here (SentencePiece, tiktoken files, the trainer) cost each `llmp validate` ~100 ms
_SOURCES = {
    "DEFAULT_CHAT_TEMPLATE": "chat",
    "ChatTemplateError": "chat",
    "iter_texts": "corpus",
    "GPT2": "patterns",
    "LLAMA3": "patterns",
    "O200K": "patterns",
    "DEFAULT_SPECIAL_TOKENS": "specials",
    "Tokenizer": "tokenizer",
    "train_bpe": "train",
    "train_bpe_from_files": "train",
}
__all__ = sorted(_SOURCES)


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_SOURCES[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCES))
