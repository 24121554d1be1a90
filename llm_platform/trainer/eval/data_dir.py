"""`eval.data_dir` as a local folder: a path as it is, or an `s3://bucket/prefix` copied into the local cache
(`$LLMP_CACHE`, as the artifact store uses) through the storage layer's S3 backend, object keys checked so that
none can write outside that folder."""

from __future__ import annotations

import os
from pathlib import Path


def local_data_dir(uri: str | None, cache: Path | None = None) -> str | None:
    if uri is None or not uri.startswith("s3://"):
        return uri
    from llm_platform.storage.backends import S3Backend

    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"eval.data_dir {uri!r}: expected s3://bucket/prefix")
    prefix = prefix.strip("/")
    backend = S3Backend(bucket, prefix, endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
    root = (
        (cache or Path(os.environ.get("LLMP_CACHE", Path.home() / ".cache" / "llm-platform")))
        / "data"
        / bucket
        / prefix
    )
    found = False
    for key in backend.list(""):
        relative = Path(key)
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"eval.data_dir {uri!r}: refusing the object key {key!r}, which leaves the folder")
        found = True
        backend.get_file(key, root / relative)
    if not found:
        raise ValueError(f"eval.data_dir {uri!r} holds no files; upload the benchmark folders under that prefix")
    return str(root)
