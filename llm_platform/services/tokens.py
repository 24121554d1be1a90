"""Bearer tokens of the jobs API: who may call it, in which namespace, with which verbs.

A token is 32 random bytes (`secrets.token_urlsafe`), shown once when created; the token file keeps only its sha256,
so a leaked file (or the chart's Secret) lets nobody in. Each entry is scoped to one namespace and is either read-write
or read-only. The server re-reads the file when it changes, so `llmp api token create` and `revoke` take effect on a
running server, and a Secret update reaches the pod without a restart.

File format (JSON, the same shape as the chart's `api.auth.tokens` values):
    {"version": 1, "tokens": [{"id": "t3f9c01ab", "namespace": "research", "readOnly": false, "sha256": "<64 hex>"}]}
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

PREFIX = "llmp_"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class TokenFileError(ValueError):
    """The token file is unreadable or malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class Token:
    id: str
    namespace: str
    read_only: bool
    sha256: str

    def entry(self) -> dict:
        return {"id": self.id, "namespace": self.namespace, "readOnly": self.read_only, "sha256": self.sha256}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def new_token(namespace: str, read_only: bool) -> tuple[str, Token]:
    """A fresh secret and its entry (which holds only its hash). ValueError for a namespace Kubernetes would refuse."""
    if not DNS_LABEL.match(namespace):
        raise ValueError(
            f"namespace '{namespace}': use lowercase letters, digits and '-' (a DNS-1123 label, at most 63 characters)"
        )
    secret = PREFIX + secrets.token_urlsafe(32)
    return secret, Token(new_token_id(), namespace, read_only, digest(secret))


def new_token_id() -> str:
    """A short public name for a token. It starts with a letter because `helm --set ...id=19762146` (and YAML) would
    read an all-digit id as a number, which the chart's schema then refuses."""
    return "t" + secrets.token_hex(4)


def parse_entries(data: object, source: str) -> list[Token]:
    """The tokens of a decoded token file; TokenFileError naming the entry and field for anything malformed. Pure."""
    if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
        raise TokenFileError(f'{source}: expected {{"version": 1, "tokens": [...]}}')
    tokens = []
    for i, item in enumerate(data["tokens"]):
        where = f"{source}: tokens[{i}]"
        if not isinstance(item, dict):
            raise TokenFileError(f"{where}: expected a mapping with id, namespace, readOnly and sha256")
        namespace, sha, read_only = item.get("namespace"), item.get("sha256"), item.get("readOnly", False)
        if not isinstance(namespace, str) or not DNS_LABEL.match(namespace):
            raise TokenFileError(f"{where}.namespace: expected a DNS-1123 label, got {namespace!r}")
        if not isinstance(sha, str) or not SHA256_HEX.match(sha):
            raise TokenFileError(f"{where}.sha256: expected 64 lowercase hex digits (the token's sha256)")
        if not isinstance(read_only, bool):
            raise TokenFileError(f"{where}.readOnly: expected true or false, got {read_only!r}")
        tokens.append(Token(str(item.get("id", f"entry-{i}")), namespace, read_only, sha))
    return tokens


def match(tokens: list[Token], presented: str) -> Token | None:
    """The entry whose hash is the presented token's. Every entry is compared in constant time, and the loop never
    stops early, so the time taken says nothing about which (or whether an) entry matched. Pure."""
    wanted = digest(presented)
    found = None
    for token in tokens:
        if hmac.compare_digest(token.sha256, wanted):
            found = token
    return found


class TokenFile:
    """The token file, read again whenever it changes on disk (a stat per lookup, cheap next to a request)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple | None = None
        self._tokens: list[Token] = []
        self._error: str | None = None

    def tokens(self) -> list[Token]:
        """The current entries; TokenFileError if the file is malformed (the server then refuses every request)."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._seen:
                self._seen = stamp
                self._tokens, self._error = [], None
                if stamp is not None:
                    try:
                        self._tokens = read(self.path)
                    except TokenFileError as e:
                        self._error = str(e)
            if self._error:
                raise TokenFileError(self._error)
            return self._tokens

    def lookup(self, presented: str) -> Token | None:
        return match(self.tokens(), presented)


def read(path: Path) -> list[Token]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as e:
        raise TokenFileError(f"{path}: cannot read: {e.strerror}") from None
    try:
        data = json.loads(text) if text.strip() else {"tokens": []}
    except ValueError as e:
        raise TokenFileError(f"{path}: not JSON: {e}") from None
    return parse_entries(data, str(path))


def add(path: Path, token: Token) -> None:
    with _locked(path):
        _write(path, [*read(path), token])


def revoke(path: Path, token_id: str) -> bool:
    """Remove the entry with this id; False if there was none."""
    with _locked(path):
        tokens = read(path)
        kept = [t for t in tokens if t.id != token_id]
        if len(kept) != len(tokens):
            _write(path, kept)
        return len(kept) != len(tokens)


@contextlib.contextmanager
def _locked(path: Path):
    """One writer at a time (two `token create` at once must not lose an entry)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _write(path: Path, tokens: list[Token]) -> None:
    """Atomically (a reader sees the old file or the new one), readable by the owner only."""
    text = json.dumps({"version": 1, "tokens": [t.entry() for t in tokens]}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
