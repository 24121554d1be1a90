"""Byte-level BPE ranks encoded by tiktoken: the fast path, used whenever a vocabulary can be expressed as ranks.

Parallel batches use one `tiktoken.Encoding` per worker thread. Threads sharing one Encoding do not scale (measured
on 2 cores: two threads on one Encoding were slower than one thread; with an Encoding each they ran 1.8x faster),
because the regex engine keeps its fast scratch space for the first thread that uses it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import accumulate
from pathlib import Path

import tiktoken

from llm_platform.trainer.tokenizer import tiktoken_file
from llm_platform.trainer.tokenizer.backends.base import char_offsets_from_byte_spans
from llm_platform.trainer.tokenizer.byte_level import bytes_to_token_string, token_string_to_bytes
from llm_platform.trainer.tokenizer.hf_json import hf_json_from_ranks

PARALLEL_MIN_CHARS = 1 << 16
PARALLEL_MIN_MEAN_CHARS = 512
"""Batches under 64K characters, or of texts under 512 characters on average, are encoded in the calling thread:
for them the per-call Python work (which holds the GIL) outweighs what threads gain (measured: 7 -> 4 MB/s on lines
of Shakespeare with 2 threads, 15 -> 20 MB/s on 5,000-character documents)."""


class TiktokenBackend:
    kind = "tiktoken"
    formats = ("hf", "tiktoken")

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
        self.name = name
        self._special_tokens = dict(special_tokens)
        self.encoding = self.new_encoding()
        self._thread_encodings = threading.local()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_key: tuple[int, int] | None = None
        size = max([*ranks.values(), *special_tokens.values()]) + 1
        self._bytes: list[bytes | None] = [None] * size
        for token, rank in ranks.items():
            self._bytes[rank] = token
        for token, token_id in special_tokens.items():
            self._bytes[token_id] = token.encode("utf-8")

    def new_encoding(self) -> tiktoken.Encoding:
        """A fresh `tiktoken.Encoding` of this vocabulary (what a tiktoken user would build from our files)."""
        return tiktoken.Encoding(
            self.name, pat_str=self.pattern, mergeable_ranks=self.ranks, special_tokens=self._special_tokens
        )

    @property
    def vocab_size(self) -> int:
        return len(self._bytes)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special_tokens)

    @staticmethod
    def _encode_with(encoding: tiktoken.Encoding, text: str, allow_special: bool) -> list[int]:
        if allow_special:
            return encoding.encode(text, allowed_special="all", disallowed_special=())
        return encoding.encode_ordinary(text)

    def encode(self, text: str, allow_special: bool) -> list[int]:
        return self._encode_with(self.encoding, text, allow_special)

    def _encode_chunk(self, texts: Sequence[str], allow_special: bool) -> list[list[int]]:
        encoding = getattr(self._thread_encodings, "encoding", None)
        if encoding is None:
            encoding = self._thread_encodings.encoding = self.new_encoding()
        return [self._encode_with(encoding, text, allow_special) for text in texts]

    def _workers(self, num_threads: int) -> ThreadPoolExecutor:
        """A pool that lives as long as the backend, so each worker builds its Encoding once (new pool after fork)."""
        key = (os.getpid(), num_threads)
        if self._pool is None or self._pool_key != key:
            self._pool = ThreadPoolExecutor(num_threads, thread_name_prefix="tiktoken")
            self._pool_key = key
        return self._pool

    def encode_batch(self, texts: Sequence[str], allow_special: bool, num_threads: int) -> list[list[int]]:
        texts = list(texts)
        chars = sum(map(len, texts))
        if num_threads <= 1 or chars < PARALLEL_MIN_CHARS or chars < PARALLEL_MIN_MEAN_CHARS * len(texts):
            return [self._encode_with(self.encoding, text, allow_special) for text in texts]
        step = -(-len(texts) // (4 * num_threads))
        chunks = [texts[i : i + step] for i in range(0, len(texts), step)]
        encoded = self._workers(num_threads).map(lambda chunk: self._encode_chunk(chunk, allow_special), chunks)
        return [ids for chunk in encoded for ids in chunk]

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

    def is_byte_fallback(self, token_id: int) -> bool:  # noqa: ARG002  # Backend protocol
        return False

    def to_hf(self, bos_token: str | None):
        return hf_json_from_ranks(self.ranks, self.pattern, self._special_tokens, bos_token)

    def save(self, directory: Path, *, bos_token: str | None, formats: tuple[str, ...]) -> list[Path]:
        written = []
        if "hf" in formats:
            hf_path = directory / "tokenizer.json"
            self.to_hf(bos_token).save(str(hf_path))
            written.append(hf_path)
        if "tiktoken" in formats:
            ranks_path, config_path = directory / tiktoken_file.RANKS_FILE, directory / tiktoken_file.CONFIG_FILE
            tiktoken_file.write_ranks(ranks_path, self.ranks)
            tiktoken_file.write_config(config_path, self.pattern, self._special_tokens)
            written += [ranks_path, config_path]
        return written
