"""Object backends: the few primitive operations the artifact store needs, over local files and S3.

Keys are '/'-separated paths relative to the store's root. Each `put_*` makes one object visible at once: an S3 PUT
is atomic per object, and the local backend writes to a temporary name and renames it into place.

`list` takes a raw key prefix (sources match `corpus/part-*` with it), but `sizes` and `delete_prefix` take a folder:
`data` means `data/...` and never `data-v2/...`, which on S3 (where a prefix is just the start of a key) is the
difference between cleaning one stage and deleting its neighbour's artifacts.

A store is written by a job's own processes, so what a status read asks of it is bounded whatever the job left
there: `child_folders` looks at a fixed number of entries of one folder level (not every key below it), `exists` is
one request, and `get_tail` reads at most the bytes it is asked for.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from .errors import StoreError
from .lease import LEASE, LocalLease, S3Lease

LIST_PAGE = 1000  # keys per S3 listing request, the most S3 returns


class Backend(Protocol):
    def put_file(self, key: str, source: Path) -> None: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def get_bytes(self, key: str) -> bytes | None: ...
    def get_tail(self, key: str, max_bytes: int) -> tuple[bytes, int] | None: ...
    def get_file(self, key: str, dest: Path) -> None: ...
    def list(self, prefix: str) -> Iterator[str]: ...
    def child_folders(self, folder: str, limit: int) -> tuple[list[str], bool]: ...
    def exists(self, key: str) -> bool: ...
    def sizes(self, folder: str) -> dict[str, int]: ...
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, folder: str) -> None: ...
    def local_path(self, key: str) -> Path | None: ...
    def lease(self, key: str, ttl_s: float) -> LocalLease | S3Lease: ...


def folder_prefix(folder: str) -> str:
    """`folder` as a key prefix that matches only keys inside it: with exactly one trailing slash ('' stays '')."""
    folder = folder.strip("/")
    return f"{folder}/" if folder else ""


class LocalBackend:
    """Files under a root folder. `local_path` lets readers use committed files in place, without a copy."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()

    def _path(self, key: str) -> Path:
        return self.root / key

    def put_file(self, key: str, source: Path) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
        shutil.copyfile(source, tmp)
        os.replace(tmp, dest)

    def put_bytes(self, key: str, data: bytes) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def get_tail(self, key: str, max_bytes: int) -> tuple[bytes, int] | None:
        """The last `max_bytes` of a file and its whole size; None if there is none. StoreError for anything but a
        regular file: a job could leave a FIFO there (an open would wait forever) or a link to /dev/zero (a device
        whose reads never end and whose size says 0). A file where a folder of the key should be is an error, as in
        `get_bytes`: the store is not what it should be, which a caller must not take for "nothing there"."""
        try:  # O_NONBLOCK: opening a FIFO returns at once, so fstat can refuse it
            fd = os.open(self._path(key), os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise StoreError(f"'{key}' in the store is not a regular file; it is not read")
            size = info.st_size
            file.seek(max(0, size - max_bytes))
            return file.read(max(0, max_bytes)), size

    def get_file(self, key: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._path(key), dest)

    def list(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                yield path.relative_to(self.root).as_posix()

    def child_folders(self, folder: str, limit: int) -> tuple[list[str], bool]:
        """The folders directly inside `folder` ('' for the root), by name, and whether it has more entries than
        the `limit` looked at (files count too; which ones is the file system's order). One directory read: nothing
        below is walked, and a link is never followed (out of the root or anywhere), nor is a folder outside the root
        read. Names starting with '.' (temporary files, leases) are not folders of the store."""
        base = self._path(folder_prefix(folder))
        if not base.resolve().is_relative_to(self.root):
            return [], False
        try:
            entries = os.scandir(base)
        except (FileNotFoundError, NotADirectoryError):
            return [], False
        names: list[str] = []
        with entries:
            for seen, entry in enumerate(entries):
                if seen == limit:
                    return sorted(names), True
                if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                    names.append(entry.name)
        return sorted(names), False

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def sizes(self, folder: str) -> dict[str, int]:
        return {key: self._path(key).stat().st_size for key in self.list(folder_prefix(folder))}

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, folder: str) -> None:
        if folder.strip("/"):  # never the whole root
            shutil.rmtree(self._path(folder_prefix(folder)), ignore_errors=True)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def lease(self, key: str, ttl_s: float) -> LocalLease:  # noqa: ARG002  # Backend.lease: a local lock dies with its holder, no TTL
        return LocalLease(self._path(f"{key}/{LEASE}"), key)


class S3Backend:
    """An S3 bucket and prefix through boto3. Endpoint and credentials come from the environment (AWS_* variables,
    AWS_ENDPOINT_URL for MinIO/moto), or from a mounted Secret folder named by LLMP_S3_SECRET_DIR."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, client=None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client or make_s3_client(endpoint_url)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, source: Path) -> None:
        self.client.upload_file(str(source), self.bucket, self._key(key))

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def get_tail(self, key: str, max_bytes: int) -> tuple[bytes, int] | None:
        """The last `max_bytes` (at least 1) of an object, by one ranged GET whatever its size, and its whole size;
        None if there is none."""
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key), Range=f"bytes=-{max_bytes}")
        except self.client.exceptions.NoSuchKey:
            return None
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "InvalidRange":  # an empty object has no last byte
                return b"", 0
            raise
        body, whole = response["Body"], response.get("ContentRange", "").rpartition("/")[2]
        if not whole.isdigit() and response.get("ContentLength", 0) > max_bytes:
            body.close()
            raise StoreError(f"the S3 server ignored a ranged read of '{self._key(key)}' (no Content-Range)")
        data = body.read(max_bytes + 1)
        return data[-max_bytes:], int(whole) if whole.isdigit() else len(data)

    def get_file(self, key: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.client.download_file(self.bucket, self._key(key), str(dest))

    def list(self, prefix: str) -> Iterator[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            for item in page.get("Contents", []):
                yield item["Key"][strip:]

    def child_folders(self, folder: str, limit: int) -> tuple[list[str], bool]:
        """The folders directly inside `folder` ('' for the root), by name, and whether it has more entries than
        the first `limit` (by name) looked at. A listing with Delimiter='/' returns each folder once, as a common
        prefix, and the objects directly inside (they count towards `limit`), never the keys below: ceil(limit /
        LIST_PAGE) requests at most, however many objects the folders hold."""
        base = self._key(folder_prefix(folder))
        names: list[str] = []
        seen, token = 0, None
        while seen < limit:
            request = {"Bucket": self.bucket, "Prefix": base, "Delimiter": "/", "MaxKeys": min(LIST_PAGE, limit - seen)}
            page = self.client.list_objects_v2(**request, **({"ContinuationToken": token} if token else {}))
            folders = [p["Prefix"][len(base) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
            names += [name for name in folders if name and not name.startswith(".")]
            seen += len(folders) + len(page.get("Contents", []))
            token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
            if token is None:
                return sorted(names), False
        return sorted(names), True

    def exists(self, key: str) -> bool:
        """One HEAD request, nothing downloaded."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def sizes(self, folder: str) -> dict[str, int]:
        return {key: size for key, (size, _) in self.objects(folder).items()}

    def objects(self, folder: str) -> dict[str, tuple[int, str]]:
        """Key -> (size, ETag) of every object inside `folder`, from one listing (no downloads)."""
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        found: dict[str, tuple[int, str]] = {}
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(folder_prefix(folder))):
            for item in page.get("Contents", []):
                found[item["Key"][strip:]] = (item["Size"], item["ETag"])
        return found

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete_prefix(self, folder: str) -> None:
        if not folder.strip("/"):  # never the whole store
            return
        keys = [self._key(k) for k in self.list(folder_prefix(folder))]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def local_path(self, key: str) -> Path | None:  # noqa: ARG002  # Backend.local_path: S3 keys have none
        return None

    def lease(self, key: str, ttl_s: float) -> S3Lease:
        return S3Lease(self.client, self.bucket, self._key(f"{key}/{LEASE}"), key, ttl_s)


def make_s3_client(endpoint_url: str | None = None, config=None):
    """An S3 client with the environment's (or the mounted Secret's) endpoint and credentials; `config` is a
    `botocore.config.Config` for callers that must not wait long (timeouts, retries)."""
    import boto3

    secret_dir = os.environ.get("LLMP_S3_SECRET_DIR")
    kwargs: dict[str, str] = {}
    if secret_dir:
        for name, arg in [
            ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
            ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
            ("AWS_ENDPOINT_URL", "endpoint_url"),
            ("AWS_DEFAULT_REGION", "region_name"),
        ]:
            path = Path(secret_dir) / name
            if path.is_file():
                kwargs[arg] = path.read_text().strip()
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    kwargs.setdefault("region_name", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    return boto3.client("s3", config=config, **kwargs)
