"""What every encoding engine offers, so `Tokenizer` can stay one object whatever file the vocabulary came from."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol


class Backend(Protocol):
    kind: str
    """`tiktoken`, `hf` or `sentencepiece`: the engine that produces the ids."""
    formats: tuple[str, ...]
    """The file formats this vocabulary can be written in, out of `hf`, `tiktoken` and `sentencepiece`."""

    @property
    def vocab_size(self) -> int: ...

    @property
    def special_tokens(self) -> dict[str, int]: ...

    def encode(self, text: str, allow_special: bool) -> list[int]: ...

    def encode_batch(self, texts: Sequence[str], allow_special: bool, num_threads: int) -> list[list[int]]: ...

    def encode_with_offsets(self, text: str, allow_special: bool) -> tuple[list[int], list[tuple[int, int]]]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def id_to_token(self, token_id: int) -> str | None: ...

    def token_to_id(self, token: str) -> int | None: ...

    def is_byte_fallback(self, token_id: int) -> bool:
        """Whether the id is a `<0xNN>` piece that spells one raw byte of text the vocabulary had no piece for."""
        ...

    def save(self, directory: Path, *, bos_token: str | None, formats: tuple[str, ...]) -> list[Path]: ...


def char_offsets_from_byte_spans(text: str, spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Turn UTF-8 byte spans into character spans of `text`.

    A token that holds only part of a multi-byte character gets that whole character's span, as HF tokenizers do.
    """
    data = text.encode("utf-8", "surrogatepass")
    char_starts = [i for i, b in enumerate(data) if b & 0xC0 != 0x80]
    offsets = []
    for start, end in spans:
        if end <= start:
            char = bisect_right(char_starts, start) - 1 if start < len(data) else len(char_starts)
            offsets.append((max(char, 0), max(char, 0)))
            continue
        offsets.append((bisect_right(char_starts, start) - 1, bisect_left(char_starts, end)))
    return offsets
