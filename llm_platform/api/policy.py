"""What a site lets a spec reach: local paths (confined to allowed roots) and credentials (allow-listed by name, each
bound to the endpoints it may be sent to).

The schema alone decides what a well-formed spec is; the policy decides what *this caller* may do with it, so it is an
explicit argument of `parse_job`/`load_job`, never a global:

- `TRUSTED` (the default) is for `llmp run`/`llmp validate` on the user's own machine: any local path the user can
  open, and only the credentials in `DEFAULT_CREDENTIALS` (each bound to its provider's endpoint).
- `SpecPolicy.strict(...)` is for the REST API and the operator, where the spec's author is not the machine's owner:
  local paths must lie under the configured roots (symlinks resolved), relative and `~` paths are refused, and only
  configured credentials may be named. `SpecPolicy.from_env` builds one from `LLMP_*` environment variables (a
  server's or operator's configuration).

The Kubernetes Secrets and the S3 endpoint a job names are not the policy's: the operator's allow-list alone checks
them (`operator.policy.allow_list_problems`), for the admission webhook, every reconcile and the jobs API's cluster
backend alike; the jobs API's local backend checks the endpoint and the store's prefix against those same lists
(`operator.policy.storage_problems`), so the server's own S3 credentials go nowhere else and open no other
namespace's artifacts. `same_endpoint` is the one rule for "this URL is that endpoint", for credentials and storage
endpoints alike; `under_store_prefix` the one rule for "this store lies under that prefix".

A spec never names an environment variable: `data.synthetic.credential` names a credential of the policy, and the
stage process reads its value through `credential_value`, which checks the endpoint binding again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel

from llm_platform.confinement import is_inside, roots_from

from .errors import Loc, Problem
from .fields import PathRole, local_path


@dataclass(frozen=True)
class Credential:
    """A secret a site lets specs use by name: the environment variable of the *server or pod* holding its value, and
    the only endpoints (base URLs) it may be sent to."""

    env: str
    endpoints: tuple[str, ...]

    def allows(self, url: str) -> bool:
        return any(same_endpoint(url, allowed) for allowed in self.endpoints)


DEFAULT_CREDENTIALS: Mapping[str, Credential] = {
    "openai": Credential(env="OPENAI_API_KEY", endpoints=("https://api.openai.com/v1",)),
}


@dataclass(frozen=True)
class SpecPolicy:
    """Where a spec may read and write local files, and which credentials it may name.

    `None` for a set of roots or names means "no restriction" (a trusted local user)."""

    read_roots: tuple[Path, ...] | None = None
    write_roots: tuple[Path, ...] | None = None
    credentials: Mapping[str, Credential] = field(default_factory=lambda: dict(DEFAULT_CREDENTIALS))

    @classmethod
    def strict(
        cls,
        read_roots: tuple[str | Path, ...] = (),
        write_roots: tuple[str | Path, ...] = (),
        credentials: Mapping[str, Credential] | None = None,
    ) -> SpecPolicy:
        """For callers that run other people's specs: nothing is allowed that is not listed here."""
        return cls(
            read_roots=tuple(Path(r).resolve() for r in read_roots),
            write_roots=tuple(Path(r).resolve() for r in write_roots),
            credentials=dict(credentials or {}),
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, strict: bool = True) -> SpecPolicy:
        """A policy from a server's or operator's environment:

        LLMP_READ_ROOTS / LLMP_WRITE_ROOTS  os.pathsep-separated folders specs may read from / write to
        LLMP_CREDENTIALS                    JSON: {"name": {"env": "VAR", "endpoints": ["https://host/v1"]}}
        With strict=False, an unset variable leaves that part unrestricted (TRUSTED's defaults)."""

        credentials = dict(DEFAULT_CREDENTIALS) if not strict else {}
        if raw := environ.get("LLMP_CREDENTIALS"):
            credentials.update(parse_credentials(raw))
        read = roots_from(environ.get("LLMP_READ_ROOTS", "" if strict else None))
        write = roots_from(environ.get("LLMP_WRITE_ROOTS", "" if strict else None))
        return cls(read_roots=read, write_roots=write, credentials=credentials)

    def credential_value(self, name: str, urls: tuple[str, ...], environ: Mapping[str, str] = os.environ) -> str:
        """The secret named `name`, for sending to `urls`; raises PermissionError unless the policy binds it to every
        one of them, LookupError when the environment does not hold it."""
        credential = self.credentials.get(name)
        if credential is None:
            raise PermissionError(f"credential '{name}' is not allowed by this site's configuration")
        for url in urls:
            if not credential.allows(url):
                raise PermissionError(f"credential '{name}' may not be sent to {url}")
        value = environ.get(credential.env)
        if not value:
            raise LookupError(f"credential '{name}' is allowed but its value is not configured here")
        return value


TRUSTED = SpecPolicy()


def parse_credentials(raw: str) -> dict[str, Credential]:
    """LLMP_CREDENTIALS's JSON into credentials; a malformed entry is an error naming it."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError('LLMP_CREDENTIALS must be a JSON object {"name": {"env": ..., "endpoints": [...]}}')
    out = {}
    for name, entry in data.items():
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("env"), str)
            or not isinstance(entry.get("endpoints"), list)
            or not all(isinstance(e, str) for e in entry["endpoints"])
        ):
            raise ValueError(f"LLMP_CREDENTIALS[{name!r}] needs 'env' (a string) and 'endpoints' (a list of URLs)")
        out[name] = Credential(env=entry["env"], endpoints=tuple(entry["endpoints"]))
    return out


def same_endpoint(url: str, allowed: str) -> bool:
    """`url` is `allowed` or below it: same scheme, host and port, and a path under the allowed path at a '/'."""
    a, b = urlsplit(url), urlsplit(allowed)
    try:
        ports = (a.port or _DEFAULT_PORT.get(a.scheme), b.port or _DEFAULT_PORT.get(b.scheme))
    except ValueError:
        return False
    if (a.scheme, (a.hostname or "").lower(), ports[0]) != (b.scheme, (b.hostname or "").lower(), ports[1]):
        return False
    base = b.path.rstrip("/")
    return a.path.rstrip("/") == base or a.path.startswith(base + "/")


_DEFAULT_PORT = {"http": 80, "https": 443}


def endpoint_entry_problem(entry: str) -> str | None:
    """Why a configured endpoint (an allow-list entry) can never match, or None: `same_endpoint` needs an http(s)
    URL with a host, and compares no user, query or fragment."""
    try:
        url = urlsplit(entry)
        url.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        url = None
    if url is None or url.scheme not in _DEFAULT_PORT or not url.hostname:
        return "is not an http(s) URL with a host, e.g. http://minio.minio:9000"
    if url.username is not None or url.password is not None or url.query or url.fragment:
        return "must not hold a user, password, ?query or #fragment"
    return None


NAMESPACE_FIELD = "{namespace}"


def store_prefix_entry_problem(entry: str) -> str | None:
    """Why a configured store prefix (an allow-list entry) is unusable, or None. An entry is `s3://` and '/'-separated
    segments, each a literal, a shell pattern within the segment ('*' never crosses a '/'), or `{namespace}`."""
    if not entry.startswith("s3://"):
        return "is not an s3:// prefix, e.g. s3://llm-artifacts/{namespace}"
    segments = entry[len("s3://") :].rstrip("/").split("/")
    if any(s in ("", ".", "..") for s in segments):
        return "has an empty, '.' or '..' segment"
    if any(NAMESPACE_FIELD in s and s != NAMESPACE_FIELD for s in segments):
        return f"must hold {NAMESPACE_FIELD} as a whole segment, e.g. s3://llm-artifacts/{NAMESPACE_FIELD}"
    return None


def under_store_prefix(uri: str, entry: str, namespace: str | None) -> bool:
    """`uri` is the prefix `entry` (see `store_prefix_entry_problem`) or below it, segment by segment, with
    `{namespace}` read as `namespace`. S3 keys are flat strings, so 's3://b/research' must not admit
    's3://b/researchers': segments compare whole. A URI with an empty, '.' or '..' segment matches nothing. Pure."""
    if not uri.startswith("s3://") or store_prefix_entry_problem(entry) is not None:
        return False
    have = uri[len("s3://") :].rstrip("/").split("/")
    want = entry[len("s3://") :].rstrip("/").split("/")
    if any(s in ("", ".", "..") for s in have) or len(have) < len(want):
        return False
    for segment, pattern in zip(have, want, strict=False):
        if pattern == NAMESPACE_FIELD:
            if namespace is None or segment != namespace:
                return False
        elif not fnmatchcase(segment, pattern):
            return False
    return True


def policy_problems(job: BaseModel, policy: SpecPolicy) -> list[Problem]:
    """Every path and credential of a validated job that `policy` does not allow, by field path."""
    problems = [p for loc, mode, value in path_fields(job) if (p := _path_problem(loc, mode, value, policy))]
    for i, stage in enumerate(job.spec.stages):
        synthetic = stage.data.synthetic if stage.data is not None else None
        if synthetic is not None and synthetic.credential is not None:
            problems += _credential_problems(("spec", "stages", i, "data", "synthetic"), synthetic, policy)
    return problems


def _credential_problems(loc: Loc, synthetic: Any, policy: SpecPolicy) -> list[Problem]:
    credential = policy.credentials.get(synthetic.credential)
    if credential is None:
        known = ", ".join(sorted(policy.credentials)) or "none"
        message = f"credential '{synthetic.credential}' is not one this site allows (allowed: {known})"
        return [Problem((*loc, "credential"), message)]
    problems = []
    for name in ("endpoint", "judge_endpoint"):
        url = getattr(synthetic, name)
        if url is not None and not credential.allows(url):
            message = (
                f"credential '{synthetic.credential}' may only be sent to {', '.join(credential.endpoints)}; "
                f"{url} is not one of them"
            )
            problems.append(Problem((*loc, name), message))
    return problems


def _path_problem(loc: Loc, mode: str, value: str, policy: SpecPolicy) -> Problem | None:
    roots = policy.read_roots if mode == "read" else policy.write_roots
    local = local_path(value)
    if local is None or roots is None:
        return None
    if not local.startswith("/"):
        return Problem(loc, f"give an absolute path under {_roots(roots)} (relative and ~ paths are not accepted here)")
    if not is_inside(local, roots):
        verb = "read from" if mode == "read" else "write to"
        return Problem(loc, f"{value} is outside the folders jobs may {verb} here; use a path under {_roots(roots)}")
    return None


def _roots(roots: tuple[Path, ...]) -> str:
    return ", ".join(str(r) for r in roots) if roots else "(none: this site allows no local paths)"


def path_fields(model: BaseModel) -> Iterator[tuple[Loc, str, str]]:
    """(field path, "read"/"write", value) for every set path field of a validated model, found through `PathRole`."""
    stack: list[tuple[BaseModel, Loc]] = [(model, ())]
    while stack:
        current, loc = stack.pop()
        for name, info in type(current).model_fields.items():
            value = getattr(current, name)
            key = info.alias or name
            role = _role(info.annotation) or _role_in(info.metadata)
            if role is not None and isinstance(value, str):
                if not _hub_dataset(current, name):
                    yield (*loc, key), role, value
            elif isinstance(value, BaseModel):
                stack.append((value, (*loc, key)))
            elif isinstance(value, list):
                stack.extend((item, (*loc, key, i)) for i, item in enumerate(value) if isinstance(item, BaseModel))


def _hub_dataset(model: BaseModel, name: str) -> bool:
    """An `hf` source's path is a Hugging Face dataset id (owner/name) unless it is written as a path."""
    if name != "path" or getattr(model, "type", None) != "hf":
        return False
    value = getattr(model, name) or ""
    return not value.startswith(("/", ".", "~", "file://"))


def _role_in(metadata: list[Any]) -> Literal["read", "write"] | None:
    """pydantic moves the metadata of a top-level `Annotated` field into `FieldInfo.metadata`."""
    return next((m.mode for m in metadata if isinstance(m, PathRole)), None)


def _role(annotation: Any) -> Literal["read", "write"] | None:
    """The PathRole inside `X`, `Annotated[X, PathRole]` or `Annotated[...] | None`."""
    if get_origin(annotation) is Annotated:
        for meta in annotation.__metadata__:
            if isinstance(meta, PathRole):
                return meta.mode
    for arg in get_args(annotation):
        if (found := _role(arg)) is not None:
            return found
    return None
