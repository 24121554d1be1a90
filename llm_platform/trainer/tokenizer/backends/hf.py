"""Any HF `tokenizer.json` (WordPiece, Unigram, BPE with normalizers...) encoded by the `tokenizers` library itself.

Used for files that tiktoken cannot reproduce exactly; see `hf_json.ranks_from_hf_json` for which those are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer

BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")


class HFBackend:
    kind = "hf"
    formats = ("hf",)
    tiktoken_incompatibility: str | None = None
    """Why tiktoken could not encode this file with the same ids (set when loaded from a file)."""

    def __init__(self, tokenizer: HFTokenizer):
        self.tokenizer = tokenizer
        # HF always matches special tokens in the text; a second copy with `encode_special_tokens` treats them as
        # plain text, which is what `allow_special=False` promises (user text cannot forge an `<|eos|>`).
        self._as_text = HFTokenizer.from_str(tokenizer.to_str())
        self._as_text.encode_special_tokens = True
        self._special_tokens = {
            token.content: token_id for token_id, token in tokenizer.get_added_tokens_decoder().items() if token.special
        }
        self._byte_fallback = bool(json.loads(tokenizer.to_str())["model"].get("byte_fallback"))
        self._size = max([*tokenizer.get_vocab(with_added_tokens=True).values(), -1]) + 1

    @property
    def vocab_size(self) -> int:
        return self._size

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special_tokens)

    def _engine(self, allow_special: bool) -> HFTokenizer:
        return self.tokenizer if allow_special else self._as_text

    def encode(self, text: str, allow_special: bool) -> list[int]:
        return self._engine(allow_special).encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str], allow_special: bool, num_threads: int) -> list[list[int]]:  # noqa: ARG002  # Backend protocol
        encodings = self._engine(allow_special).encode_batch(list(texts), add_special_tokens=False)
        return [encoding.ids for encoding in encodings]

    def encode_with_offsets(self, text: str, allow_special: bool) -> tuple[list[int], list[tuple[int, int]]]:
        encoding = self._engine(allow_special).encode(text, add_special_tokens=False)
        return encoding.ids, [tuple(span) for span in encoding.offsets]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def id_to_token(self, token_id: int) -> str | None:
        return self.tokenizer.id_to_token(token_id)

    def token_to_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    def is_byte_fallback(self, token_id: int) -> bool:
        return self._byte_fallback and BYTE_PIECE.fullmatch(self.tokenizer.id_to_token(token_id) or "") is not None

    def save(self, directory: Path, *, bos_token: str | None, formats: tuple[str, ...]) -> list[Path]:  # noqa: ARG002  # Backend protocol
        path = directory / "tokenizer.json"
        self.tokenizer.save(str(path))
        return [path]
