"""One writer per key: the lease a commit (and a whole stage run) holds on the key it writes.

Without it, two writers of one key (a retried pod while the old one still runs, two `llmp run` on one workdir) race:
each commit ends by deleting the versions its manifest does not name, which includes the other writer's upload in
progress, and that writer then publishes a manifest whose files are gone.

- Local files: an `flock` on `<key>/.lease`. The kernel drops it when the holder's process dies, so a crashed writer
  never blocks the next one and no expiry is needed.
- S3: the object `<key>/.lease` (holder and expiry, as JSON), created with a conditional PUT (`If-None-Match: *`),
  renewed and taken over only with `If-Match` on the ETag read, deleted with `If-Match`: every change is a
  compare-and-swap on the server, so two writers can never both believe they hold it. A holder renews it every
  third of its TTL from a background thread; one that dies stops renewing, and its lease can be taken once expired.
  Expiry compares wall clocks of different machines, so the TTL must be well above their skew (NTP keeps it far
  below a second). Before publishing, `check()` renews synchronously: a writer that was paused past its expiry (and
  may have been replaced) learns it there and abandons its commit instead of publishing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import LeaseHeld, LeaseLost

LEASE = ".lease"
OWNER = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Holder:
    owner: str
    host: str
    pid: int
    since: float
    expires: float | None = None

    @classmethod
    def me(cls, ttl_s: float | None = None, since: float | None = None) -> Holder:
        now = time.time()
        return cls(OWNER, socket.gethostname(), os.getpid(), since or now, now + ttl_s if ttl_s else None)

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        try:
            return cls(**json.loads(data))
        except (ValueError, TypeError):
            return None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    def describe(self) -> str:
        since = time.strftime("%H:%M:%SZ", time.gmtime(self.since))
        until = f", lease expires in {self.expires - time.time():.0f} s" if self.expires else ""
        return f"process {self.pid} on {self.host} (since {since}{until})"


def held_error(key: str, holder: Holder | None) -> LeaseHeld:
    who = holder.describe() if holder else "another process"
    return LeaseHeld(
        f"'{key}' is being written by {who}; one writer per key: wait for that run to finish "
        "(a crashed writer's lease is released when its process dies, or expires)"
    )


class LocalLease:
    def __init__(self, path: Path, key: str):
        self.path, self.key = path, key
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = Holder.parse(os.pread(fd, 4096, 0))
                os.close(fd)
                raise held_error(self.key, holder) from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # locked a file its holder removed on release: lock the one now at the path instead
        os.pwrite(fd, Holder.me().to_json(), 0)
        self._fd = fd

    def check(self) -> None:
        """Nothing to do: the kernel keeps the lock for as long as this process lives."""

    def release(self) -> None:
        """Remove the lease file, then unlock: no empty lease files pile up under deleted checkpoints, and a waiter
        that locked the removed file notices (`_same_file`) and retries on the path."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


class S3Lease:
    def __init__(self, client, bucket: str, object_key: str, key: str, ttl_s: float):
        self.client, self.bucket, self.object_key, self.key, self.ttl_s = client, bucket, object_key, key, ttl_s
        self._etag: str | None = None
        self._lost: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._since = time.time()

    def acquire(self) -> None:
        self._since = time.time()
        for _ in range(5):
            try:
                self._etag = self._put(IfNoneMatch="*")
                break
            except _Conflict:
                pass
            current = self._read()
            if current is None:
                continue  # released meanwhile: try to create it again
            holder, etag = current
            if holder is not None and holder.expires is not None and holder.expires > time.time():
                raise held_error(self.key, holder)
            try:  # expired (its holder stopped renewing): take it over, only if nobody else did first
                self._etag = self._put(IfMatch=etag)
                break
            except _Conflict:
                continue
        else:
            raise held_error(self.key, None)
        self._renewer = threading.Thread(target=self._renew_periodically, daemon=True, name=f"lease {self.key}")
        self._renewer.start()

    def check(self) -> None:
        """Renew now: on return this process holds the key for at least another TTL; raises `LeaseLost` if not."""
        with self._lock:
            if self._lost is None:
                try:
                    self._etag = self._put(IfMatch=self._etag)
                except _Conflict as e:
                    self._lost = e
            if self._lost is not None:
                raise LeaseLost(
                    f"lost the lease on '{self.key}' (not renewed within {self.ttl_s:.0f} s; another writer may "
                    "have taken it over): not publishing"
                ) from self._lost

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        with self._lock:
            if self._lost is None and self._etag is not None:
                # a failed condition means it was taken over already: no longer ours to delete
                with contextlib.suppress(self.client.exceptions.ClientError):
                    self.client.delete_object(Bucket=self.bucket, Key=self.object_key, IfMatch=self._etag)
            self._etag = None

    def _renew_periodically(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.check()
            except LeaseLost:
                return
            except Exception:  # a network error: try again at the next tick; check() before publishing decides
                continue

    def _put(self, **condition) -> str:
        body = Holder.me(self.ttl_s, since=self._since).to_json()
        try:
            response = self.client.put_object(Bucket=self.bucket, Key=self.object_key, Body=body, **condition)
        except self.client.exceptions.ClientError as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (404, 409, 412):  # gone, concurrent conditional write, or precondition failed
                raise _Conflict(str(e)) from e
            raise
        return response["ETag"]

    def _read(self) -> tuple[Holder | None, str] | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.object_key)
        except self.client.exceptions.NoSuchKey:
            return None
        return Holder.parse(response["Body"].read()), response["ETag"]


class _Conflict(Exception):
    """A conditional write that lost: someone else changed the lease object first."""
