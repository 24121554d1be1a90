"""The artifact store: versioned, atomic commits of folders of files over a backend.

Layout under the store's root, for a key such as `pretrain` or `pretrain/checkpoints/step_100`:

    <key>/versions/<version>/<files...>   the files of each commit, never changed once written
    <key>/manifest.json                   the committed version: its id, file list (size, sha256) and metadata

A commit uploads every file under a fresh version prefix, then writes the manifest, last. The manifest is one object,
replaced in one step, so a reader sees the old version or the new one, never a mix, and a crash before the manifest
leaves only an unreferenced version that `gc` removes. The previous version is kept, so a reader that read the old
manifest a moment before a commit can still read its files.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .backends import Backend, LocalBackend, S3Backend

MANIFEST = "manifest.json"


class StoreError(RuntimeError):
    """A store operation that cannot succeed (missing artifact, corrupt file)."""


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
        return cls(**json.loads(data))


class ArtifactStore:
    def __init__(self, backend: Backend, uri: str, cache_dir: Path | None = None):
        self.backend = backend
        self.uri = uri
        self.cache_dir = cache_dir or Path(os.environ.get("LLMP_CACHE", Path.home() / ".cache" / "llm-platform"))

    @classmethod
    def open(cls, uri: str, endpoint_url: str | None = None) -> ArtifactStore:
        """`s3://bucket/prefix`, `file:///abs/path` or a plain local path."""
        if uri.startswith("s3://"):
            bucket, _, prefix = uri[5:].partition("/")
            if not bucket:
                raise StoreError(f"storage URI '{uri}' names no bucket; write s3://BUCKET/PREFIX")
            return cls(S3Backend(bucket, prefix, endpoint_url), uri)
        path = uri.removeprefix("file://")
        return cls(LocalBackend(path), "file://" + str(Path(path).expanduser().resolve()))

    # -- reading -------------------------------------------------------------------------------------------------
    def manifest(self, key: str) -> Manifest | None:
        data = self.backend.get_bytes(f"{key}/{MANIFEST}")
        return Manifest.from_json(data) if data is not None else None

    def exists(self, key: str) -> bool:
        return self.manifest(key) is not None

    def fetch(self, key: str) -> Path:
        """A local folder holding the committed files of `key`: in place for local stores, a verified cached
        download for S3 (cached by version id, so a cache entry never goes stale)."""
        manifest = self.manifest(key)
        if manifest is None:
            raise StoreError(f"no committed artifact '{key}' in {self.uri}")
        prefix = f"{key}/versions/{manifest.version}"
        local = self.backend.local_path(prefix)
        if local is not None:
            return local
        dest = self.cache_dir / _safe(self.uri) / key / manifest.version
        if dest.is_dir():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".download-"))
        try:
            for name, info in manifest.files.items():
                self.backend.get_file(f"{prefix}/{name}", tmp / name)
                if (tmp / name).stat().st_size != info["size"]:
                    raise StoreError(f"{key}/{name}: downloaded size differs from the manifest; the store is corrupt")
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest

    def read_json(self, key: str) -> Any | None:
        """A small JSON object written with `write_json` (e.g. a `latest` pointer)."""
        data = self.backend.get_bytes(key)
        return json.loads(data) if data is not None else None

    def keys(self, prefix: str) -> list[str]:
        """Committed keys directly or indirectly under `prefix`."""
        suffix = "/" + MANIFEST
        return sorted(
            k[: -len(suffix)] for k in self.backend.list(prefix) if k.endswith(suffix) and "/versions/" not in k
        )

    # -- writing -------------------------------------------------------------------------------------------------
    @contextmanager
    def writer(self, key: str, meta: dict[str, Any] | None = None) -> Iterator[Path]:
        """Write files into the yielded folder; they are committed together when the block exits without error."""
        with tempfile.TemporaryDirectory(prefix="llmp-commit-") as tmp:
            yield Path(tmp)
            self.commit(key, Path(tmp), meta)

    def commit(self, key: str, folder: Path, meta: dict[str, Any] | None = None) -> Manifest:
        """Upload every file of `folder` as a new version of `key`, then publish it by writing the manifest."""
        previous = self.manifest(key)
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
        self.backend.put_bytes(f"{key}/{MANIFEST}", manifest.to_json())
        self.gc(key)
        return manifest

    def write_json(self, key: str, obj: Any) -> None:
        self.backend.put_bytes(key, json.dumps(obj, indent=2, sort_keys=True).encode())

    def delete(self, key: str) -> None:
        """Remove a committed artifact: the manifest first (it becomes invisible at once), then its files."""
        self.backend.delete_prefix(f"{key}/{MANIFEST}")
        self.backend.delete_prefix(f"{key}/versions")

    def gc(self, key: str) -> list[str]:
        """Delete versions of `key` that neither the manifest nor its predecessor names (e.g. left by a crash)."""
        manifest = self.manifest(key)
        keep = {manifest.version, manifest.previous} if manifest else set()
        versions = {k.split("/versions/", 1)[1].split("/", 1)[0] for k in self.backend.list(f"{key}/versions")}
        removed = sorted(v for v in versions if v not in keep)
        for version in removed:
            self.backend.delete_prefix(f"{key}/versions/{version}")
        return removed


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _safe(uri: str) -> str:
    return uri.replace("://", "_").replace("/", "_")
