"""Reading documents from where they live: this Python's standard library, text files, JSONL and Parquet, local or S3.

Sources stream: documents are yielded one at a time and never all held in memory.
"""

from __future__ import annotations

import glob
import itertools
import json
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    source: str


def stdlib_root() -> Path:
    """The standard library's source tree of the running Python: real text and code present on every machine."""
    return Path(sysconfig.get_paths()["stdlib"])


def iter_documents(source) -> Iterator[Document]:
    """Documents of one `api.data.Source`, at most `source.max_docs` of them."""
    readers = {"stdlib": _stdlib, "files": _files, "jsonl": _jsonl, "parquet": _parquet}
    docs = readers[source.type](source)
    yield from (docs if source.max_docs is None else itertools.islice(docs, source.max_docs))


def _stdlib(source) -> Iterator[Document]:
    root = stdlib_root()
    for path in sorted(root.rglob(source.include)):
        if "site-packages" in path.parts or not path.is_file():
            continue
        yield Document(
            id=f"stdlib:{path.relative_to(root)}",
            text=path.read_text(encoding="utf-8", errors="replace"),
            source="stdlib",
        )


def expand(pattern: str) -> list[str]:
    """Files matching a local glob or an s3://bucket/prefix* pattern, sorted; an error names a pattern with no match."""
    if pattern.startswith("s3://"):
        from llm_platform.storage import ArtifactStore

        bucket_and_prefix = pattern[5:]
        bucket, _, key_pattern = bucket_and_prefix.partition("/")
        prefix = key_pattern.split("*", 1)[0]
        store = ArtifactStore.open(f"s3://{bucket}")
        import fnmatch

        matches = [f"s3://{bucket}/{k}" for k in store.backend.list(prefix) if fnmatch.fnmatch(k, key_pattern)]
    else:
        matches = sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True))
    if not matches:
        raise FileNotFoundError(f"source path '{pattern}' matches no file")
    return sorted(matches)


def _open_text(path: str):
    if path.startswith("s3://"):
        import io

        from llm_platform.storage import ArtifactStore

        bucket, _, key = path[5:].partition("/")
        data = ArtifactStore.open(f"s3://{bucket}").backend.get_bytes(key)
        return io.StringIO(data.decode("utf-8", errors="replace"))
    return open(path, encoding="utf-8", errors="replace")


def _files(source) -> Iterator[Document]:
    for path in expand(source.path):
        with _open_text(path) as f:
            yield Document(id=path, text=f.read(), source=path)


def _jsonl(source) -> Iterator[Document]:
    for path in expand(source.path):
        with _open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
                text = record.get(source.field) if isinstance(record, dict) else None
                if not isinstance(text, str):
                    raise ValueError(f"{path}:{lineno}: no string field '{source.field}'; set `field` on the source")
                yield Document(id=str(record.get("id", f"{path}:{lineno}")), text=text, source=path)


def _parquet(source) -> Iterator[Document]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError("Parquet sources need pyarrow: pip install 'llm-platform[data]'") from e
    for path in expand(source.path):
        parquet = pq.ParquetFile(path)
        if source.field not in parquet.schema_arrow.names:
            raise ValueError(f"{path}: no column '{source.field}'; columns are {parquet.schema_arrow.names}")
        row = 0
        for batch in parquet.iter_batches(columns=[source.field], batch_size=1024):
            for text in batch.column(0).to_pylist():
                row += 1
                if isinstance(text, str):
                    yield Document(id=f"{path}:{row}", text=text, source=path)
