"""Encoding engines behind `Tokenizer`: tiktoken for byte-level BPE ranks, HF `tokenizers`, and `sentencepiece`."""

from llm_platform.trainer.tokenizer.backends.base import Backend, char_offsets_from_byte_spans

__all__ = ["Backend", "char_offsets_from_byte_spans"]
