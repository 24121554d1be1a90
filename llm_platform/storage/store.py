"""The artifact store: versioned, atomic, verified commits of folders of files over a backend.

Layout under the store's root, for a key such as `pretrain` or `pretrain/checkpoints/step_100`:

    <key>/versions/<version>/<files...>   the files of each commit, never changed once written
    <key>/manifest.json                   the committed version: its id, file list (size, sha256) and metadata
    <key>/.lease                          who is writing the key now (see lease.py)

A commit uploads every file under a fresh version prefix, then writes the manifest, last. The manifest is one object,
replaced in one step, so a reader sees the old version or the new one, never a mix, and a crash before the manifest
leaves only an unreferenced version that `gc` removes. The previous version is kept, so a reader that read the old
manifest a moment before a commit can still read its files. A commit holds the key's lease from its first upload to
its cleanup, so no second writer's cleanup can delete the files it is about to publish.

Reads are verified against the manifest (see `verify` and `fetch`): a missing, resized or altered file is a
`CorruptArtifact` naming the key and the file, never a silent use.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .backends import Backend, LocalBackend, S3Backend, make_s3_client
from .downloads import staged_download
from .errors import CorruptArtifact, FileTooLarge, LeaseHeld, StoreError
from .lease import LocalLease, S3Lease

MANIFEST = "manifest.json"
# reads of files a job writes and shared servers read (see `ArtifactStore.read_bounded`): a manifest lists every
# committed file (about 150 bytes each), so 16 MiB is some 100,000 files; pointers and progress files are a few KB
MAX_MANIFEST_BYTES = 16 << 20
MAX_JSON_BYTES = 1 << 20
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
LEASE_TTL_S = 60.0

# Leases this process holds, by (store URI, key): a stage run holds its key's lease and its commit takes it again.
_held: dict[tuple[str, str], list] = {}
_held_lock = threading.Lock()


@dataclass
class Manifest:
    key: str
    version: str
    created: str
    files: dict[str, dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    previous: str | None = None

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse and check a manifest: it is a file in the store like any other, and its version and file names
        become local paths, so one naming `../..` must not write or read outside the folder it describes."""
        manifest = cls(**json.loads(data))
        if not isinstance(manifest.version, str) or not _VERSION.fullmatch(manifest.version):
            raise ValueError(f"version {str(manifest.version)[:80]!r} is not a version id")
        if not isinstance(manifest.files, dict):
            raise ValueError("files is not a mapping")
        for name, info in manifest.files.items():
            parts = name.split("/")
            if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
                raise ValueError(f"file name {name[:200]!r} is not a relative path inside the artifact")
            if not (
                isinstance(info, dict)
                and isinstance(info.get("size"), int)
                and info["size"] >= 0
                and isinstance(info.get("sha256"), str)
                and _SHA256.fullmatch(info["sha256"])
            ):
                raise ValueError(f"file {name[:200]!r} has no valid size and sha256")
        return manifest


class ArtifactStore:
    def __init__(self, backend: Backend, uri: str, cache_dir: Path | None = None, lease_ttl_s: float = LEASE_TTL_S):
        self.backend = backend
        self.uri = uri
        self.cache_dir = cache_dir or Path(os.environ.get("LLMP_CACHE", Path.home() / ".cache" / "llm-platform"))
        self.lease_ttl_s = lease_ttl_s

    @classmethod
    def open(cls, uri: str, endpoint_url: str | None = None, s3_config=None) -> ArtifactStore:
        """`s3://bucket/prefix`, `file:///abs/path` or a plain local path; `s3_config`: a `botocore.config.Config`
        for a caller that must not wait long on S3 (timeouts, retries)."""
        if uri.startswith("s3://"):
            bucket, _, prefix = uri[5:].partition("/")
            if not bucket:
                raise StoreError(f"storage URI '{uri}' names no bucket; write s3://BUCKET/PREFIX")
            client = make_s3_client(endpoint_url, s3_config) if s3_config is not None else None
            return cls(S3Backend(bucket, prefix, endpoint_url, client), uri)
        path = uri.removeprefix("file://")
        return cls(LocalBackend(path), "file://" + str(Path(path).expanduser().resolve()))

    @property
    def reads_in_place(self) -> bool:
        """Whether committed files are local files read where they lie (no download)."""
        return self.backend.local_path("") is not None

    # -- reading -------------------------------------------------------------------------------------------------
    def manifest(self, key: str) -> Manifest | None:
        data = self.read_bounded(f"{key}/{MANIFEST}", MAX_MANIFEST_BYTES, "a manifest")
        if data is None:
            return None
        try:
            return Manifest.from_json(data)
        except (ValueError, TypeError) as e:
            raise StoreError(f"{self.uri}/{key}/{MANIFEST} is not a valid manifest ({e}); re-run the stage") from e

    def exists(self, key: str) -> bool:
        return self.manifest(key) is not None

    def verify(self, key: str, manifest: Manifest | None = None, *, content: bool = True) -> Manifest:
        """Check the committed files of `key` against its manifest; raises `CorruptArtifact` naming the first bad file.

        Sizes and presence are always checked (a stat per file locally, one listing on S3). With `content`, the
        sha256 of every file is checked too: on a local store by reading the files in place, with a memo of each
        verified file's (inode, size, mtime, ctime) so unchanged files are not hashed twice; on S3 by `fetch`, which
        hashes what it downloads."""
        manifest = manifest or self._committed(key)
        prefix = f"{key}/versions/{manifest.version}"
        local = self.backend.local_path(prefix)
        if local is not None:
            if content:
                self._verify_local(local, manifest)
                return manifest
        elif content:
            self.fetch(key)
            return manifest
        found = {k[len(prefix) + 1 :]: size for k, size in self.backend.sizes(prefix).items()}
        for name, info in sorted(manifest.files.items()):
            if name not in found:
                raise CorruptArtifact(self.uri, key, name, f"{info['size']} bytes", "no such file")
            if found[name] != info["size"]:
                raise CorruptArtifact(self.uri, key, name, f"{info['size']} bytes", f"{found[name]} bytes")
        return manifest

    def fetch(self, key: str) -> Path:
        """A local folder holding the committed files of `key`, each checked against the manifest's size and
        sha256: in place for local stores; for S3, a download into a temporary folder that is verified, then renamed
        into the cache (by version id, so a cache entry never goes stale and a partial download is never cached)."""
        manifest = self._committed(key)
        prefix = f"{key}/versions/{manifest.version}"
        local = self.backend.local_path(prefix)
        if local is not None:
            self._verify_local(local, manifest)
            return local
        dest = self.cache_dir / _safe(self.uri) / key / manifest.version
        if dest.is_dir():
            try:
                self._verify_local(dest, manifest)
                return dest
            except CorruptArtifact:  # the local copy was altered since; the store's copy decides
                shutil.rmtree(dest, ignore_errors=True)
        self.verify(key, manifest, content=False)  # a lost or resized file is found by one listing, not a download
        with staged_download(dest) as tmp:
            for name in manifest.files:
                self.backend.get_file(f"{prefix}/{name}", tmp / name)
            self._verify_local(tmp, manifest, memo_of=dest)  # renaming keeps the files' inodes and times
        return dest

    def read_json(self, key: str) -> Any | None:
        """A small JSON object written with `write_json` (e.g. a `latest` pointer), at most MAX_JSON_BYTES."""
        data = self.read_bounded(key, MAX_JSON_BYTES, "such a file")
        return json.loads(data) if data is not None else None

    def read_bounded(self, key: str, limit: int, what: str) -> bytes | None:
        """The whole file, None if there is none; FileTooLarge, naming it as `what`, if it is over `limit` bytes. A
        job's own processes write the store's files, and the operator and the jobs API read them with their own
        memory: one read of at most `limit + 1` bytes (a ranged GET on S3) keeps a multi-GB file from taking a
        shared server down."""
        found = self.backend.get_tail(key, limit + 1)
        if found is None:
            return None
        data, size = found
        if size > limit:
            where = f"{self.uri.rstrip('/')}/{key}"
            raise FileTooLarge(f"{where} is {size:,} bytes, over the {limit:,} bytes {what} may have")
        return data

    def keys(self, prefix: str) -> list[str]:
        """Committed keys inside the folder `prefix`."""
        suffix = "/" + MANIFEST
        folder = prefix.strip("/") + "/" if prefix.strip("/") else ""
        return sorted(
            k[: -len(suffix)] for k in self.backend.list(folder) if k.endswith(suffix) and "/versions/" not in k
        )

    # -- writing -------------------------------------------------------------------------------------------------
    @contextmanager
    def lease(self, key: str, wait_s: float = 0.0) -> Iterator[LocalLease | S3Lease]:
        """Be the only writer of `key` for the block; raises `LeaseHeld` (naming the holder) if another process
        still is after `wait_s` seconds. Re-entrant within a process: a stage run holds its key and its commit takes
        the same lease again."""
        ident = (self.uri, key)
        with _held_lock:
            entry = _held.get(ident)
            if entry is not None:
                entry[1] += 1
        if entry is None:
            lease = self.backend.lease(key, self.lease_ttl_s)
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    lease.acquire()
                    break
                except LeaseHeld:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(min(1.0, max(0.05, wait_s / 20)))
            entry = [lease, 1]
            with _held_lock:
                _held[ident] = entry
        try:
            yield entry[0]
        finally:
            with _held_lock:
                entry[1] -= 1
                last = entry[1] == 0
                if last:
                    del _held[ident]
            if last:
                entry[0].release()

    @contextmanager
    def writer(self, key: str, meta: dict[str, Any] | None = None) -> Iterator[Path]:
        """Write files into the yielded folder; they are committed together when the block exits without error."""
        with tempfile.TemporaryDirectory(prefix="llmp-commit-") as tmp:
            yield Path(tmp)
            self.commit(key, Path(tmp), meta)

    def commit(self, key: str, folder: Path, meta: dict[str, Any] | None = None) -> Manifest:
        """Upload every file of `folder` as a new version of `key`, then publish it by writing the manifest.

        Holds the key's lease throughout; raises `LeaseHeld` if another process writes the key, and `LeaseLost`
        (publishing nothing) if this process lost the lease while uploading."""
        with self.lease(key) as lease:
            try:
                previous = self.manifest(key)
            except StoreError:  # an unreadable manifest is what this commit replaces
                previous = None
            version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(4)
            files: dict[str, dict[str, Any]] = {}
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                name = path.relative_to(folder).as_posix()
                self.backend.put_file(f"{key}/versions/{version}/{name}", path)
                files[name] = {"size": path.stat().st_size, "sha256": _sha256(path)}
            manifest = Manifest(
                key=key,
                version=version,
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                files=files,
                meta=meta or {},
                previous=previous.version if previous else None,
            )
            local = self.backend.local_path(f"{key}/versions/{version}")
            if local is not None:  # the copies were just made from the hashed files: the first reader need not re-hash
                _write_memo(self._memo(local), {n: _stamp(local / n, f["sha256"]) for n, f in files.items()})
            lease.check()  # still the only writer: nobody's cleanup can have removed the files just uploaded
            self.backend.put_bytes(f"{key}/{MANIFEST}", manifest.to_json())
            self.gc(key)
        return manifest

    def write_json(self, key: str, obj: Any) -> None:
        self.backend.put_bytes(key, json.dumps(obj, indent=2, sort_keys=True).encode())

    def delete(self, key: str) -> None:
        """Remove a committed artifact: the manifest first (it becomes invisible at once), then its files."""
        self.backend.delete(f"{key}/{MANIFEST}")
        self.backend.delete_prefix(f"{key}/versions")

    def gc(self, key: str) -> list[str]:
        """Delete versions of `key` that neither the manifest nor its predecessor names (e.g. left by a crash).
        Each is deleted as the exact folder `<key>/versions/<version>/`, never by a bare prefix of its name."""
        manifest = self.manifest(key)
        keep = {manifest.version, manifest.previous} if manifest else set()
        prefix = f"{key}/versions/"
        versions = {k[len(prefix) :].split("/", 1)[0] for k in self.backend.list(prefix)}
        removed = sorted(v for v in versions if v and v not in keep)
        for version in removed:
            self.backend.delete_prefix(f"{prefix}{version}")
        return removed

    # -- helpers -------------------------------------------------------------------------------------------------
    def _committed(self, key: str) -> Manifest:
        manifest = self.manifest(key)
        if manifest is None:
            raise StoreError(f"no committed artifact '{key}' in {self.uri}")
        return manifest

    def _verify_local(self, folder: Path, manifest: Manifest, memo_of: Path | None = None) -> None:
        memo = self._memo(memo_of or folder)
        known = _read_memo(memo)
        seen = _check_folder(folder, manifest, self.uri, known)
        if seen != known:
            _write_memo(memo, seen)

    def _memo(self, folder: Path) -> Path:
        """Where the record of `folder`'s verified files lives (outside the store: readers may not write there)."""
        name = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:32]
        return self.cache_dir / "verified" / f"{name}.json"


def _check_folder(folder: Path, manifest: Manifest, uri: str, known: dict[str, list]) -> dict[str, list]:
    """Raise `CorruptArtifact` for the first file of `manifest` that is missing from `folder` or differs in size or
    sha256, or for a file in `folder` that the manifest does not list; return the stamps of the verified files.

    `known` holds stamps from earlier checks: per file, its (inode, size, mtime_ns, ctime_ns) and hash. A file whose
    stamp still matches is not hashed again: any write to a file changes its ctime, which no user-space call can set
    back. What this trusts is the file system: a change made through it is always noticed (from the next clock tick
    of its coarse timestamps on), while media corruption that bypasses it is left to the disk's and file system's
    own checksums. Deleting the records (`<cache>/verified/`) forces a full check."""
    seen: dict[str, list] = {}
    for name, info in sorted(manifest.files.items()):
        path = folder / name
        try:
            st = path.stat()
        except FileNotFoundError:
            raise CorruptArtifact(uri, manifest.key, name, f"{info['size']} bytes", "no such file") from None
        if st.st_size != info["size"]:
            raise CorruptArtifact(uri, manifest.key, name, f"{info['size']} bytes", f"{st.st_size} bytes")
        stamp = _stamp(path, info["sha256"], st)
        if known.get(name) != stamp:
            actual = _sha256(path)
            if actual != info["sha256"]:
                raise CorruptArtifact(uri, manifest.key, name, f"sha256 {info['sha256']}", f"sha256 {actual}")
        seen[name] = stamp
    extra = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.relative_to(folder).as_posix() not in manifest.files
    )
    if extra:
        raise CorruptArtifact(uri, manifest.key, extra[0], "no such file (not in the manifest)", "a file")
    return seen


def _stamp(path: Path, sha256: str, st: os.stat_result | None = None) -> list:
    st = st or path.stat()
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, sha256]


def _read_memo(memo: Path) -> dict[str, list]:
    try:
        return json.loads(memo.read_text())
    except (OSError, ValueError):
        return {}


def _write_memo(memo: Path, stamps: dict[str, list]) -> None:
    """Only an optimisation: a read-only cache (or a race with another reader) costs a re-hash, no more."""
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
        tmp.write_text(json.dumps(stamps))
        os.replace(tmp, memo)
    except OSError:
        pass


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _safe(uri: str) -> str:
    return uri.replace("://", "_").replace("/", "_")
