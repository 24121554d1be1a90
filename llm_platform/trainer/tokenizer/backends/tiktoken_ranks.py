"""Byte-level BPE ranks encoded by tiktoken: the fast path, used whenever a vocabulary can be expressed as ranks."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate
from pathlib import Path

import tiktoken

from llm_platform.trainer.tokenizer import tiktoken_file
from llm_platform.trainer.tokenizer.backends.base import char_offsets_from_byte_spans
from llm_platform.trainer.tokenizer.byte_level import bytes_to_token_string, token_string_to_bytes
from llm_platform.trainer.tokenizer.hf_json import hf_json_from_ranks


class TiktokenBackend:
    kind = "tiktoken"

    def __init__(self, ranks: dict[bytes, int], pattern: str, special_tokens: dict[str, int], name: str = "llmp"):
        missing = [b for b in range(256) if bytes([b]) not in ranks]
        if missing:
            raise ValueError(
                f"byte-level ranks must hold all 256 single bytes; {len(missing)} are missing, e.g. {missing[:5]}"
            )
        clash = set(special_tokens.values()) & set(ranks.values())
        if clash:
            raise ValueError(f"special token ids {sorted(clash)[:5]} are also ranks of ordinary tokens")
        self.ranks = ranks
        self.pattern = pattern
        self._special_tokens = dict(special_tokens)
        self.encoding = tiktoken.Encoding(
            name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=self._special_tokens
        )
        size = max([*ranks.values(), *special_tokens.values()]) + 1
        self._bytes: list[bytes | None] = [None] * size
        for token, rank in ranks.items():
            self._bytes[rank] = token
        for token, token_id in special_tokens.items():
            self._bytes[token_id] = token.encode("utf-8")

    @property
    def vocab_size(self) -> int:
        return len(self._bytes)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special_tokens)

    def encode(self, text: str, allow_special: bool) -> list[int]:
        if allow_special:
            return self.encoding.encode(text, allowed_special="all", disallowed_special=())
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: Sequence[str], allow_special: bool, num_threads: int) -> list[list[int]]:
        texts = list(texts)
        if allow_special:
            return self.encoding.encode_batch(
                texts, num_threads=num_threads, allowed_special="all", disallowed_special=()
            )
        return self.encoding.encode_ordinary_batch(texts, num_threads=num_threads)

    def encode_with_offsets(self, text: str, allow_special: bool) -> tuple[list[int], list[tuple[int, int]]]:
        ids = self.encode(text, allow_special)
        ends = list(accumulate(len(self._bytes[i]) for i in ids))
        spans = list(zip([0, *ends[:-1]], ends, strict=True))
        return ids, char_offsets_from_byte_spans(text, spans)

    def decode(self, ids: Sequence[int]) -> str:
        return self.encoding.decode(list(ids))

    def token_bytes(self, token_id: int) -> bytes | None:
        return self._bytes[token_id] if 0 <= token_id < len(self._bytes) else None

    def id_to_token(self, token_id: int) -> str | None:
        """The token as HF spells it: byte-level characters for ordinary tokens, the text for specials."""
        data = self.token_bytes(token_id)
        if data is None:
            return None
        if token_id in self._special_tokens.values():
            return data.decode("utf-8")
        return bytes_to_token_string(data)

    def token_to_id(self, token: str) -> int | None:
        if token in self._special_tokens:
            return self._special_tokens[token]
        try:
            return self.ranks.get(token_string_to_bytes(token))
        except KeyError:
            return None

    def to_hf(self, bos_token: str | None):
        return hf_json_from_ranks(self.ranks, self.pattern, self._special_tokens, bos_token)

    def save(self, directory: Path, *, bos_token: str | None) -> list[Path]:
        ranks_path, config_path = directory / tiktoken_file.RANKS_FILE, directory / tiktoken_file.CONFIG_FILE
        hf_path = directory / "tokenizer.json"
        tiktoken_file.write_ranks(ranks_path, self.ranks)
        tiktoken_file.write_config(config_path, self.pattern, self._special_tokens)
        self.to_hf(bos_token).save(str(hf_path))
        return [hf_path, ranks_path, config_path]
