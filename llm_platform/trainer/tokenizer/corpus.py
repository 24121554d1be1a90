"""Training text from files: plain text, JSONL (one field per record), gzip of either, by path or glob."""

from __future__ import annotations

import glob
import gzip
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

CHUNK_CHARS = 1 << 16
"""Plain-text files are yielded in chunks of about this many characters, cut at line ends, to bound memory."""

OnDecodeError = Literal["error", "replace", "skip"]


def expand_sources(sources: str | Path | Iterable[str | Path]) -> list[Path]:
    """Paths for each source; globs (`**` included) expand, sorted; a source that matches nothing is an error."""
    if isinstance(sources, str | Path):
        sources = [sources]
    paths: list[Path] = []
    for source in sources:
        text = str(source)
        if any(c in text for c in "*?["):
            matches = sorted(p for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not matches:
                raise FileNotFoundError(f"the glob {text!r} matches no files")
            paths.extend(Path(p) for p in matches)
        elif Path(text).is_dir():
            raise IsADirectoryError(f"{text} is a directory; pass a glob such as '{text}/**/*.txt'")
        elif not Path(text).is_file():
            raise FileNotFoundError(f"training file {text} does not exist")
        else:
            paths.append(Path(text))
    return paths


def _open_text(path: Path, errors: str) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")  # noqa: SIM115 (closed by the wrapper)
    return io.TextIOWrapper(raw, encoding="utf-8", errors=errors, newline="")


def _is_jsonl(path: Path) -> bool:
    suffixes = path.suffixes[-2:] if path.suffix == ".gz" else path.suffixes[-1:]
    return bool(suffixes) and suffixes[0] in (".jsonl", ".ndjson")


def _jsonl_texts(path: Path, field: str, errors: str) -> Iterator[str]:
    with _open_text(path, errors) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not valid JSON ({err.msg})") from None
            value = record.get(field) if isinstance(record, dict) else None
            if not isinstance(value, str):
                raise ValueError(f"{path}:{number}: field {field!r} is missing or not a string; set jsonl_field=")
            yield value


def _plain_texts(path: Path, errors: str) -> Iterator[str]:
    with _open_text(path, errors) as handle:
        chunk: list[str] = []
        size = 0
        for line in handle:
            chunk.append(line)
            size += len(line)
            if size >= CHUNK_CHARS:
                yield "".join(chunk)
                chunk, size = [], 0
        if chunk:
            yield "".join(chunk)


def iter_texts(
    sources: str | Path | Iterable[str | Path], *, jsonl_field: str = "text", on_decode_error: OnDecodeError = "error"
) -> Iterator[str]:
    """Yield the text of each source: `.jsonl`/`.ndjson` give `record[jsonl_field]`, anything else is UTF-8 text.

    `on_decode_error`: `error` stops at a file that is not UTF-8 (naming it), `replace` substitutes U+FFFD,
    `skip` leaves such files out (source trees such as CPython's hold a few Latin-1 test files on purpose).
    """
    if on_decode_error not in ("error", "replace", "skip"):
        raise ValueError(f"on_decode_error must be error, replace or skip, got {on_decode_error!r}")
    errors = "replace" if on_decode_error == "replace" else "strict"
    for path in expand_sources(sources):
        reader = _jsonl_texts(path, jsonl_field, errors) if _is_jsonl(path) else _plain_texts(path, errors)
        if on_decode_error != "skip":
            try:
                yield from reader
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path} is not UTF-8 ({err.reason}); convert it or pass on_decode_error='replace' or 'skip'"
                ) from None
            continue
        try:
            texts = list(reader)
        except UnicodeDecodeError:
            continue
        yield from texts
