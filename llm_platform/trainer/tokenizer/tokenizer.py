"""`Tokenizer`: one object for text <-> ids, whatever format the vocabulary came in.

The ids come from the engine that defines the format (tiktoken for byte-level BPE ranks, `sentencepiece` for
`.model` files, HF `tokenizers` for other `tokenizer.json` files), so they equal that library's ids by construction.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from llm_platform.trainer.tokenizer.backends import Backend
from llm_platform.trainer.tokenizer.chat import DEFAULT_CHAT_TEMPLATE, render_chat
from llm_platform.trainer.tokenizer.files import load_files, save_files
from llm_platform.trainer.tokenizer.specials import CHAT_ROLE_TOKENS


class Tokenizer:
    """Encode, decode, render chats and save in HF, tiktoken or SentencePiece files.

    `roles` names the special tokens that play bos/eos/pad/unk (e.g. `{"bos": "<|bos|>"}`); `chat_template` is Jinja
    text (None: our default when the vocabulary has the chat role tokens, else no chat support).
    """

    def __init__(self, backend: Backend, *, roles: Mapping[str, str] | None = None, chat_template: str | None = None):
        self.backend = backend
        self.roles = dict(roles or {})
        for role, token in self.roles.items():
            if backend.token_to_id(token) is None:
                raise ValueError(f"the {role} token {token!r} is not in the vocabulary")
        if chat_template is None and all(t in backend.special_tokens for t in CHAT_ROLE_TOKENS):
            chat_template = DEFAULT_CHAT_TEMPLATE
        self.chat_template = chat_template

    def __repr__(self) -> str:
        specials = len(self.special_tokens)
        return f"Tokenizer(format={self.format!r}, vocab_size={self.vocab_size}, special_tokens={specials})"

    @property
    def format(self) -> str:
        """The engine that encodes: `tiktoken`, `hf` or `sentencepiece`."""
        return self.backend.kind

    @property
    def vocab_size(self) -> int:
        """Size of the embedding table a model needs: highest id + 1, special tokens included."""
        return self.backend.vocab_size

    @property
    def special_tokens(self) -> dict[str, int]:
        return self.backend.special_tokens

    def _role_id(self, role: str) -> int | None:
        token = self.roles.get(role)
        return None if token is None else self.backend.token_to_id(token)

    @property
    def bos_id(self) -> int | None:
        return self._role_id("bos")

    @property
    def eos_id(self) -> int | None:
        return self._role_id("eos")

    @property
    def pad_id(self) -> int | None:
        return self._role_id("pad")

    @property
    def unk_id(self) -> int | None:
        return self._role_id("unk")

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self.backend.id_to_token(token_id)

    def _frame(self, ids: list[int], add_bos: bool, add_eos: bool) -> list[int]:
        if add_bos:
            ids.insert(0, self._required_id("bos"))
        if add_eos:
            ids.append(self._required_id("eos"))
        return ids

    def _required_id(self, role: str) -> int:
        token_id = self._role_id(role)
        if token_id is None:
            raise ValueError(f"this tokenizer has no {role} token; train it with one or set roles={{'{role}': ...}}")
        return token_id

    def encode(
        self, text: str, *, add_bos: bool = False, add_eos: bool = False, allow_special: bool = False
    ) -> list[int]:
        """Ids of `text`. Special-token strings in the text are plain text unless `allow_special` is set."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}; use encode_batch for lists")
        return self._frame(self.backend.encode(text, allow_special), add_bos, add_eos)

    def encode_batch(
        self,
        texts: Iterable[str],
        *,
        add_bos: bool = False,
        add_eos: bool = False,
        allow_special: bool = False,
        num_threads: int | None = None,
    ) -> list[list[int]]:
        """Encode many texts in parallel threads (the engines release the GIL); `num_threads` defaults to all cores."""
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}")
        batch = self.backend.encode_batch(texts, allow_special, num_threads or os.cpu_count() or 1)
        return [self._frame(list(ids), add_bos, add_eos) for ids in batch]

    def encode_with_offsets(self, text: str, *, allow_special: bool = False) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids and, for each, the (start, end) character span of `text` it covers."""
        return self.backend.encode_with_offsets(text, allow_special)

    @cached_property
    def _unused_ids(self) -> frozenset[int]:
        """Ids below vocab_size that name no token (vocabularies such as cl100k leave gaps before their specials)."""
        return frozenset(i for i in range(self.vocab_size) if self.backend.id_to_token(i) is None)

    def _check_ids(self, ids: list[int]) -> None:
        try:
            valid = not ids or (min(ids) >= 0 and max(ids) < self.vocab_size and self._unused_ids.isdisjoint(ids))
        except TypeError:
            valid = False
        if valid:
            return
        for i, token_id in enumerate(ids):
            if not isinstance(token_id, int) or not 0 <= token_id < self.vocab_size or token_id in self._unused_ids:
                raise ValueError(
                    f"ids[{i}] = {token_id!r} is not a token id of this vocabulary (size {self.vocab_size})"
                )

    def decode(self, ids: Sequence[int], *, skip_special: bool = False) -> str:
        ids = list(ids)
        self._check_ids(ids)
        if skip_special:
            special = set(self.special_tokens.values())
            ids = [token_id for token_id in ids if token_id not in special]
        return self.backend.decode(ids)

    def decode_batch(self, batch: Iterable[Sequence[int]], *, skip_special: bool = False) -> list[str]:
        return [self.decode(ids, skip_special=skip_special) for ids in batch]

    def render_chat(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = False) -> str:
        if self.chat_template is None:
            raise ValueError(
                "this tokenizer has no chat template; pass chat_template= or add one to tokenizer_config.json"
            )
        tokens = {f"{role}_token": token for role, token in self.roles.items()}
        return render_chat(self.chat_template, messages, add_generation_prompt=add_generation_prompt, **tokens)

    def encode_chat(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = False) -> list[int]:
        """Ids of the rendered chat; the template's role tokens become special ids (as `apply_chat_template` does)."""
        return self.encode(self.render_chat(messages, add_generation_prompt), allow_special=True)

    def save(self, directory: str | Path, formats: Iterable[str] | None = None) -> list[Path]:
        """Write `formats` (default: all this vocabulary has) plus `tokenizer_config.json`; returns the files written.

        `hf`: `tokenizer.json`; `tiktoken`: `tokenizer.tiktoken` + `tiktoken_config.json` (byte-level BPE only);
        `sentencepiece`: `tokenizer.model` (SentencePiece vocabularies only).
        """
        return save_files(Path(directory), self.backend, self.roles, self.chat_template, formats)

    @classmethod
    def load(cls, path: str | Path, **options: Any) -> Tokenizer:
        """Load a directory or file: `.tiktoken`, HF `tokenizer.json` or SentencePiece `.model`.

        A bare `.tiktoken` file without `tiktoken_config.json` beside it needs `pattern=` (a regex or a name such as
        `cl100k`) and, if it has any, `special_tokens=` (name -> id).
        """
        backend, roles, chat_template = load_files(Path(path), **options)
        return cls(backend, roles=roles, chat_template=chat_template)
