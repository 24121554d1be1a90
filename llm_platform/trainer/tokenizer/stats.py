"""How well a vocabulary compresses held-out text, and how much of it the vocabulary could not represent.

bytes/token is the number that matters for training cost (tokens per GB of data); tokens/word is easier to compare
across tokenizers of different languages; the unknown-byte rate is zero for byte-level BPE and SentencePiece with byte
fallback, and shows how much text a SentencePiece model without byte fallback turns into `<unk>`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from llm_platform.trainer.tokenizer.tokenizer import Tokenizer

BATCH = 1024


@dataclass(frozen=True)
class CompressionStats:
    texts: int
    bytes: int
    chars: int
    words: int
    tokens: int
    unknown_bytes: int
    byte_fallback_tokens: int

    @property
    def bytes_per_token(self) -> float:
        return self.bytes / self.tokens if self.tokens else 0.0

    @property
    def tokens_per_word(self) -> float:
        return self.tokens / self.words if self.words else 0.0

    @property
    def unknown_byte_rate(self) -> float:
        return self.unknown_bytes / self.bytes if self.bytes else 0.0

    def as_dict(self) -> dict[str, float | int]:
        rates = {"bytes_per_token": self.bytes_per_token, "tokens_per_word": self.tokens_per_word}
        return asdict(self) | rates | {"unknown_byte_rate": self.unknown_byte_rate}


def _unknown_bytes(tokenizer: Tokenizer, text: str, unk_id: int) -> int:
    ids, offsets = tokenizer.encode_with_offsets(text)
    return sum(
        len(text[start:end].encode("utf-8"))
        for token_id, (start, end) in zip(ids, offsets, strict=True)
        if token_id == unk_id
    )


def compression_stats(tokenizer: Tokenizer, texts: Iterable[str]) -> CompressionStats:
    """Measure `tokenizer` on `texts` (words are whitespace-separated runs)."""
    unk_id = tokenizer.unk_id
    byte_pieces = {i for i in range(tokenizer.vocab_size) if tokenizer.backend.is_byte_fallback(i)}
    totals = dict.fromkeys(("texts", "bytes", "chars", "words", "tokens", "unknown_bytes", "byte_fallback_tokens"), 0)
    batch: list[str] = []

    def flush() -> None:
        for text, ids in zip(batch, tokenizer.encode_batch(batch), strict=True):
            totals["texts"] += 1
            totals["bytes"] += len(text.encode("utf-8"))
            totals["chars"] += len(text)
            totals["words"] += len(text.split())
            totals["tokens"] += len(ids)
            if byte_pieces:
                totals["byte_fallback_tokens"] += sum(token_id in byte_pieces for token_id in ids)
            if unk_id is not None and unk_id in ids:
                totals["unknown_bytes"] += _unknown_bytes(tokenizer, text, unk_id)
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) >= BATCH:
            flush()
    flush()
    return CompressionStats(**totals)
