"""Finding, reading and writing tokenizer files: which format a path holds, and `tokenizer_config.json`.

`tokenizer_config.json` is the HF file that names the bos/eos/pad/unk tokens and holds the chat template; we read and
write it for every format so roles and templates survive a round trip through any of them.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as HFTokenizer

from llm_platform.trainer.tokenizer import tiktoken_file
from llm_platform.trainer.tokenizer.backends import Backend
from llm_platform.trainer.tokenizer.backends.hf import HFBackend
from llm_platform.trainer.tokenizer.backends.sentencepiece_model import MODEL_FILE, SentencePieceBackend
from llm_platform.trainer.tokenizer.backends.tiktoken_ranks import TiktokenBackend
from llm_platform.trainer.tokenizer.hf_json import NotTiktokenCompatible, ranks_from_hf_json
from llm_platform.trainer.tokenizer.patterns import resolve_pattern
from llm_platform.trainer.tokenizer.specials import roles_for

FORMATS = ("hf", "tiktoken", "sentencepiece")
CONFIG_FILE = "tokenizer_config.json"
HF_FILE = "tokenizer.json"
ROLES = ("bos", "eos", "pad", "unk")


def _backend_from_hf_json(path: Path) -> Backend:
    """tiktoken when the file allows identical ids (the fast path), else HF `tokenizers` itself."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg}); expected an HF tokenizer.json") from None
    try:
        return TiktokenBackend(*ranks_from_hf_json(data))
    except (NotTiktokenCompatible, KeyError, TypeError) as reason:
        why = str(reason) if isinstance(reason, NotTiktokenCompatible) else f"unexpected layout ({reason!r})"
    try:
        hf = HFTokenizer.from_str(text)
    except Exception as err:  # tokenizers raises a bare Exception for files it cannot parse
        raise ValueError(f"{path}: not a valid HF tokenizer.json ({err})") from None
    backend = HFBackend(hf)
    backend.tiktoken_incompatibility = why
    return backend


def _backend_from_tiktoken(path: Path, pattern: str | None, special_tokens: dict[str, int] | None) -> Backend:
    config_path = path.parent / tiktoken_file.CONFIG_FILE
    if config_path.exists() and pattern is None and special_tokens is None:
        config = tiktoken_file.read_config(config_path)  # the file's own regex, stored as it is
        return TiktokenBackend(tiktoken_file.read_ranks(path), config["pat_str"], dict(config["special_tokens"]))
    if pattern is None:
        raise ValueError(
            f"{path} holds only ranks; pass pattern= (a name: llama3, cl100k, gpt2, o200k, or regex:<regex>) and "
            f"special_tokens=, or put {tiktoken_file.CONFIG_FILE} beside it"
        )
    return TiktokenBackend(tiktoken_file.read_ranks(path), resolve_pattern(pattern), dict(special_tokens or {}))


def _find_file(directory: Path) -> Path:
    for name in (tiktoken_file.RANKS_FILE, HF_FILE, MODEL_FILE):
        if (directory / name).exists() and (
            name != tiktoken_file.RANKS_FILE or (directory / tiktoken_file.CONFIG_FILE).exists()
        ):
            return directory / name
    raise FileNotFoundError(
        f"{directory} holds no tokenizer: expected {HF_FILE}, {MODEL_FILE}, or "
        f"{tiktoken_file.RANKS_FILE} with {tiktoken_file.CONFIG_FILE}"
    )


def _token_text(value: Any) -> str | None:
    """tokenizer_config.json spells a token as a string or as an AddedToken dict with `content`."""
    return value.get("content") if isinstance(value, dict) else value


def load_files(
    path: Path, *, pattern: str | None = None, special_tokens: dict[str, int] | None = None
) -> tuple[Backend, dict[str, str], str | None]:
    """Return (backend, roles, chat template) for a tokenizer directory or file."""
    if not path.exists():
        raise FileNotFoundError(f"tokenizer path {path} does not exist")
    file = _find_file(path) if path.is_dir() else path
    if file.suffix == ".tiktoken":
        backend = _backend_from_tiktoken(file, pattern, special_tokens)
    elif file.suffix == ".json":
        backend = _backend_from_hf_json(file)
    elif file.suffix == ".model":
        backend = SentencePieceBackend(file.read_bytes())
    else:
        raise ValueError(
            f"{file}: unknown tokenizer format; expected .tiktoken, tokenizer.json or a SentencePiece .model"
        )
    roles = backend.role_tokens() if isinstance(backend, SentencePieceBackend) else roles_for(backend.special_tokens)
    chat_template = None
    config_path = file.parent / CONFIG_FILE
    if config_path.exists():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        for role in ROLES:
            token = _token_text(config.get(f"{role}_token"))
            if token is not None:
                roles[role] = token
        chat_template = config.get("chat_template")
        if isinstance(chat_template, list):
            chat_template = {t["name"]: t["template"] for t in chat_template}.get("default")
    return backend, roles, chat_template


def tokenizer_config(roles: dict[str, str], chat_template: str | None, formats: tuple[str, ...]) -> dict[str, Any]:
    config: dict[str, Any] = {f"{role}_token": roles[role] for role in ROLES if role in roles}
    # the platform's BOS rule (tokenizer/bos.py), stated for transformers and vLLM: BOS starts every sequence
    config["add_bos_token"] = "bos" in roles
    config["add_eos_token"] = False
    if "hf" in formats:
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["clean_up_tokenization_spaces"] = False
    if chat_template is not None:
        config["chat_template"] = chat_template
    return config


def _why_not(backend: Backend, name: str) -> str:
    if name == "tiktoken":
        reason = getattr(backend, "tiktoken_incompatibility", None)
        return "tiktoken holds only byte-level BPE ranks" + (
            f"; this tokenizer.json differs: {reason}" if reason else ""
        )
    if name == "sentencepiece":
        return "a SentencePiece .model can only come from SentencePiece training"
    return "writing a SentencePiece model as tokenizer.json is not supported (keep the .model)"


def check_formats(backend: Backend, formats: Iterable[str] | None) -> tuple[str, ...]:
    """The formats to write (None: all the backend has); a format this vocabulary cannot take is an error saying why."""
    if formats is None:
        return backend.formats
    formats = tuple(formats)
    for name in formats:
        if name not in FORMATS:
            raise ValueError(f"unknown tokenizer format {name!r}; choose from {', '.join(FORMATS)}")
        if name not in backend.formats:
            can = ", ".join(backend.formats)
            raise ValueError(
                f"this {backend.kind} tokenizer cannot be saved as {name} ({_why_not(backend, name)}); use {can}"
            )
    return formats


def save_files(
    directory: Path,
    backend: Backend,
    roles: dict[str, str],
    chat_template: str | None,
    formats: Iterable[str] | None = None,
) -> list[Path]:
    """Write all files into a staging folder first, then move them in, so a failure leaves no half-written set."""
    formats = check_formats(backend, formats)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".staging-") as staging_name:
        staging = Path(staging_name)
        written = backend.save(staging, bos_token=roles.get("bos"), formats=formats)
        config_path = staging / CONFIG_FILE
        config = tokenizer_config(roles, chat_template, formats)
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        final = []
        for file in [*written, config_path]:
            target = directory / file.name
            os.replace(file, target)
            final.append(target)
    return final
