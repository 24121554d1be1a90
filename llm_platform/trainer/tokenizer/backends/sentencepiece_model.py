"""A SentencePiece `.model` (BPE or unigram) encoded by `sentencepiece` itself, so ids match it exactly.

SentencePiece never matches control pieces (`<s>`, role tokens) inside text; with `allow_special=True` we split the
text on them first and encode the pieces between, which is how chat templates get their role tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import sentencepiece as spm

from llm_platform.trainer.tokenizer.backends.base import char_offsets_from_byte_spans

MODEL_FILE = "tokenizer.model"


class SentencePieceBackend:
    kind = "sentencepiece"
    formats = ("sentencepiece",)

    def __init__(self, model_proto: bytes):
        try:
            self.processor = spm.SentencePieceProcessor(model_proto=model_proto)
        except RuntimeError as err:
            raise ValueError(
                f"not a SentencePiece model ({err}); pass a .model file written by sentencepiece"
            ) from None
        self.model_proto = model_proto
        sp = self.processor
        self._special_tokens = {
            sp.id_to_piece(i): i for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i)
        }
        self._control_ids = {i for i in self._special_tokens.values() if sp.is_control(i)}
        matchable = sorted((sp.id_to_piece(i) for i in self._control_ids), key=len, reverse=True)
        self._special_regex = re.compile("(" + "|".join(map(re.escape, matchable)) + ")") if matchable else None

    @property
    def vocab_size(self) -> int:
        return self.processor.get_piece_size()

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special_tokens)

    def role_tokens(self) -> dict[str, str]:
        """bos/eos/pad/unk as the model itself declares them (ids of -1 mean the model has no such token)."""
        sp = self.processor
        ids = {"bos": sp.bos_id(), "eos": sp.eos_id(), "pad": sp.pad_id(), "unk": sp.unk_id()}
        return {role: sp.id_to_piece(i) for role, i in ids.items() if i >= 0}

    def _segments(self, text: str, allow_special: bool) -> list[tuple[bool, str]]:
        """(is_special, text) runs; without allow_special the whole text is one ordinary run."""
        if not allow_special or self._special_regex is None:
            return [(False, text)]
        parts = self._special_regex.split(text)
        return [(i % 2 == 1, part) for i, part in enumerate(parts) if part]

    def encode(self, text: str, allow_special: bool) -> list[int]:
        ids: list[int] = []
        for special, part in self._segments(text, allow_special):
            ids.extend([self._special_tokens[part]] if special else self.processor.encode(part))
        return ids

    def encode_batch(self, texts: Sequence[str], allow_special: bool, num_threads: int) -> list[list[int]]:
        if not allow_special or self._special_regex is None:
            return self.processor.encode(list(texts), num_threads=num_threads)
        return [self.encode(text, allow_special) for text in texts]

    def encode_with_offsets(self, text: str, allow_special: bool) -> tuple[list[int], list[tuple[int, int]]]:
        ids: list[int] = []
        spans: list[tuple[int, int]] = []
        base = 0
        for special, part in self._segments(text, allow_special):
            size = len(part.encode("utf-8"))
            if special:
                ids.append(self._special_tokens[part])
                spans.append((base, base + size))
            else:
                pieces = self.processor.encode(part, return_type="proto").pieces
                ids.extend(piece.id for piece in pieces)
                byte_pieces = [self.processor.is_byte(p.id) for p in pieces]
                spans.extend(_fill_byte_fallback_spans([(base + p.begin, base + p.end) for p in pieces], byte_pieces))
            base += size
        return ids, char_offsets_from_byte_spans(text, spans)

    def decode(self, ids: Sequence[int]) -> str:
        """sentencepiece drops control pieces when decoding; we keep them as text, like the other backends."""
        out: list[str] = []
        run: list[int] = []
        for token_id in ids:
            if token_id in self._control_ids:
                out.append(self.processor.decode(run))
                out.append(self.processor.id_to_piece(token_id))
                run = []
            else:
                run.append(token_id)
        out.append(self.processor.decode(run))
        return "".join(out)

    def id_to_token(self, token_id: int) -> str | None:
        return self.processor.id_to_piece(token_id) if 0 <= token_id < self.vocab_size else None

    def token_to_id(self, token: str) -> int | None:
        token_id = self.processor.piece_to_id(token)
        return (
            None if token_id == self.processor.unk_id() and token != self.processor.id_to_piece(token_id) else token_id
        )

    def is_byte_fallback(self, token_id: int) -> bool:
        return self.processor.is_byte(token_id)

    def save(self, directory: Path, *, bos_token: str | None, formats: tuple[str, ...]) -> list[Path]:  # noqa: ARG002  # Backend protocol
        path = directory / MODEL_FILE
        path.write_bytes(self.model_proto)
        return [path]


def _fill_byte_fallback_spans(spans: list[tuple[int, int]], byte_pieces: list[bool]) -> list[tuple[int, int]]:
    """Byte-fallback pieces of one character get empty spans from sentencepiece; give them the character's span."""
    filled = list(spans)
    for i in range(len(filled) - 2, -1, -1):
        start, end = filled[i]
        if byte_pieces[i] and start == end and filled[i + 1][0] == start:
            filled[i] = filled[i + 1]
    return filled
