"""Reading documents from where they live: this Python's standard library, text files, JSONL and Parquet (local or
S3), and Hugging Face datasets.

Sources stream: documents are yielded one at a time, S3 objects are read as streams, nothing is loaded whole. A
source can be read as one of `num_shards` disjoint shards, so parallel workers split it without coordination: whole
files go to workers when there are enough files, otherwise records are dealt round-robin.

A source is any object with the attributes of `api.data.Source` (`type`, `path`, `include`, `field`, `max_docs`,
`config`, `split`); the library does not import the API models.
"""

from __future__ import annotations

import fnmatch
import glob
import itertools
import json
import re
import sysconfig
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llm_platform.confinement import check_local

from .document import Document

__all__ = [
    "GLOB_CHARS",
    "Document",
    "ScanLimit",
    "SourceUnreadable",
    "expand",
    "iter_documents",
    "iter_matches",
    "stdlib_paths",
    "stdlib_root",
]


GLOB_CHARS = re.compile(r"[*?\[]")
"""What makes a path a pattern rather than a literal name: its literal prefix ends at the first of them."""


def stdlib_root() -> Path:
    """The standard library's source tree of the running Python: real text and code present on every machine."""
    return Path(sysconfig.get_paths()["stdlib"])


def iter_documents(source, shard: int = 0, num_shards: int = 1) -> Iterator[Document]:
    """Documents of one source that fall in `shard`; `source.max_docs` bounds the total over all shards."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} is not in 0..{num_shards - 1}")
    readers = {"stdlib": _stdlib, "files": _files, "jsonl": _jsonl, "parquet": _parquet, "hf": _huggingface}
    docs = readers[source.type](source, shard, num_shards)
    limit = getattr(source, "max_docs", None)
    if limit is not None:  # split evenly: the shards' limits add up to max_docs
        docs = itertools.islice(docs, limit // num_shards + (shard < limit % num_shards))
    yield from docs


def _units(items: list, shard: int, num_shards: int) -> tuple[list, bool]:
    """Whole items for this shard when there are enough to go round, else all items with records dealt out."""
    if num_shards == 1:
        return items, False
    if len(items) >= num_shards:
        return items[shard::num_shards], False
    return items, True


def stdlib_paths(include: str) -> list[Path]:
    """The files of the standard library's tree that a `stdlib` source's `include` glob names, sorted (installed
    packages left out): its documents, one a file."""
    return [p for p in sorted(stdlib_root().rglob(include)) if "site-packages" not in p.parts and p.is_file()]


def _stdlib(source, shard: int, num_shards: int) -> Iterator[Document]:
    root = stdlib_root()
    for index, path in enumerate(stdlib_paths(source.include)):
        if index % num_shards != shard:
            continue
        yield Document(
            id=f"stdlib:{path.relative_to(root)}",
            text=path.read_text(encoding="utf-8", errors="replace"),
            source="stdlib",
        )


def expand(pattern: str) -> list[str]:
    """Files matching a local glob or an s3://bucket/prefix* pattern, sorted; an error names a pattern with no match."""
    matches = sorted(iter_matches(pattern))
    if not matches:
        raise FileNotFoundError(f"source path '{pattern}' matches no file")
    return matches


class ScanLimit(Exception):
    """More S3 keys than the caller's `scan_limit` share the pattern's literal prefix, and none of those looked at
    matched: whether a later one does is left undecided."""


class SourceUnreadable(ValueError):
    """An S3 source that cannot be listed (no such bucket, access denied, no endpoint): `message` says what is wrong
    and `hint` what to do; its text, both with the pattern, is what a stage that meets it prints."""

    def __init__(self, pattern: str, message: str, hint: str):
        super().__init__(f"source path '{pattern}': {message}; {hint}")
        self.message, self.hint = message, hint


def iter_matches(pattern: str, scan_limit: int | None = None, client=None) -> Iterator[str]:
    """Files matching a local glob or an s3://bucket/prefix* pattern, lazily and unsorted: what `expand` sorts, and
    what preflight stops reading at the first match.

    On S3 only the keys under the pattern's literal prefix (up to its first `*`, `?` or `[`) are listed, one page of
    1,000 keys at a time as the caller asks for more; with `scan_limit`, `ScanLimit` is raised instead of listing
    beyond that many keys. A bucket that cannot be listed raises `SourceUnreadable`. `client` is the S3 client to
    list with (default: the environment's, as every reader here uses)."""
    if pattern.startswith("s3://"):
        yield from _s3_matches(pattern, scan_limit, client)
        return
    for match in glob.iglob(str(Path(pattern).expanduser()), recursive=True):
        check_local(match, "read", f"source path '{pattern}'")  # a glob or a symlink may lead out of allowed folders
        yield match


def _s3_matches(pattern: str, scan_limit: int | None, client) -> Iterator[str]:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key_pattern = pattern[5:].partition("/")
    prefix = GLOB_CHARS.split(key_pattern, maxsplit=1)[0]
    try:
        for scanned, key in enumerate(_s3_backend(bucket, client).list(prefix)):
            if scan_limit is not None and scanned >= scan_limit:
                raise ScanLimit(f"more than {scan_limit} keys under s3://{bucket}/{prefix}, none matching '{pattern}'")
            if fnmatch.fnmatch(key, key_pattern):
                yield f"s3://{bucket}/{key}"
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            raise SourceUnreadable(
                pattern, f"bucket '{bucket}' does not exist", "fix the bucket name, or create it"
            ) from None
        if code in ("AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise SourceUnreadable(
                pattern,
                f"S3 refused to list s3://{bucket}/{prefix} with these credentials ({code})",
                f"use credentials that may list '{bucket}' (s3:ListBucket)",
            ) from None
        raise SourceUnreadable(
            pattern, f"listing s3://{bucket}/{prefix} failed ({code or error})", "check the bucket"
        ) from None
    except BotoCoreError as error:  # no endpoint, a malformed bucket name, no credentials: botocore says which
        raise SourceUnreadable(
            pattern,
            f"cannot list s3://{bucket}/{prefix}: {error}",
            "check the bucket name, the credentials, and the S3 endpoint (AWS_ENDPOINT_URL) and network",
        ) from None


def _s3_backend(bucket: str, client=None):
    from llm_platform.storage.backends import S3Backend

    return S3Backend(bucket, client=client)


@contextmanager
def open_text(path: str) -> Iterator:
    """A text stream over a local file or an S3 object (read in chunks, never whole)."""
    if path.startswith("s3://"):
        import codecs

        bucket, _, key = path[5:].partition("/")
        body = _s3_backend(bucket).client.get_object(Bucket=bucket, Key=key)["Body"]
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            yield (decoder.decode(line) for line in body.iter_lines(keepends=True))
        finally:
            body.close()
    else:
        with open(path, encoding="utf-8", errors="replace") as f:
            yield f


@contextmanager
def _local_copy(path: str) -> Iterator[str]:
    """A local path for a file that needs random access (Parquet): S3 objects are downloaded to a temporary file."""
    if not path.startswith("s3://"):
        yield path
        return
    bucket, _, key = path[5:].partition("/")
    with tempfile.TemporaryDirectory(prefix="llmp-src-") as tmp:
        local = Path(tmp) / Path(key).name
        _s3_backend(bucket).client.download_file(bucket, key, str(local))
        yield str(local)


def _files(source, shard: int, num_shards: int) -> Iterator[Document]:
    paths = expand(source.path)
    for index, path in enumerate(paths):
        if index % num_shards != shard:
            continue
        with open_text(path) as f:
            yield Document(id=path, text="".join(f), source=path)


def _jsonl(source, shard: int, num_shards: int) -> Iterator[Document]:
    paths, deal = _units(expand(source.path), shard, num_shards)
    index = 0
    for path in paths:
        with open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                index += 1
                if deal and (index - 1) % num_shards != shard:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
                text = record.get(source.field) if isinstance(record, dict) else None
                if not isinstance(text, str):
                    raise ValueError(f"{path}:{lineno}: no string field '{source.field}'; set `field` on the source")
                doc_id = str(record.get("id", f"{path}:{lineno}"))
                yield Document(id=doc_id, text=text, source=path)


def _parquet(source, shard: int, num_shards: int) -> Iterator[Document]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError("Parquet sources need pyarrow: pip install 'llm-platform[data]'") from e
    paths, deal = _units(expand(source.path), shard, num_shards)
    index = 0
    for path in paths:
        with _local_copy(path) as local:
            parquet = pq.ParquetFile(local)
            if source.field not in parquet.schema_arrow.names:
                raise ValueError(f"{path}: no column '{source.field}'; columns are {parquet.schema_arrow.names}")
            row = 0
            for batch in parquet.iter_batches(columns=[source.field], batch_size=1024):
                for text in batch.column(0).to_pylist():
                    row += 1
                    index += 1
                    if deal and (index - 1) % num_shards != shard:
                        continue
                    if isinstance(text, str):
                        yield Document(id=f"{path}:{row}", text=text, source=path)


def _huggingface(source, shard: int, num_shards: int) -> Iterator[Document]:
    """A Hugging Face dataset streamed with `datasets` (hub name when the network allows, or a local folder)."""
    try:
        import datasets
    except ImportError as e:
        raise ImportError("Hugging Face sources need the `datasets` package: pip install datasets") from e
    try:
        stream = datasets.load_dataset(source.path, source.config, split=source.split, streaming=True)
    except Exception as e:  # the hub's and the filesystem's errors differ; both leave the user the same fix
        raise ValueError(
            f"hf source '{source.path}' (config {source.config!r}, split {source.split!r}) could not be opened: "
            f"{e}. Check the name, `config` and `split`, and that the hub is reachable or the path is local."
        ) from e
    if num_shards > 1:  # whole data files per worker when there are enough, else every num_shards-th record
        from datasets.distributed import split_dataset_by_node

        stream = split_dataset_by_node(stream, rank=shard, world_size=num_shards)
    for index, record in enumerate(stream):
        text = record.get(source.field)
        if not isinstance(text, str):
            raise ValueError(f"hf source '{source.path}' row {index}: no string field '{source.field}'; set `field`")
        doc_id = str(record.get("id", f"{source.path}:{shard}:{index}"))
        yield Document(id=doc_id, text=text, source=source.path)
