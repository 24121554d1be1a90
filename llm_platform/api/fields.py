"""String fields with a grammar: container images, Kubernetes names and labels, storage paths, endpoints, credentials.

Each is an `Annotated` type: a validator that says what is wrong and what a good value looks like, and where the
grammar fits a regular expression, the pattern the CRD carries (so `kubectl apply` refuses it before the webhook).
Paths and URIs also carry a `PathRole`: whether the job reads or writes there, which `policy.py` uses to confine them.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_LABEL = re.compile(DNS_LABEL)
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# The image reference grammar of distribution/reference (what docker, containerd and Kubernetes accept).
_ALNUM = r"[a-z0-9]+"
_PATH_COMPONENT = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_PATTERN = rf"^(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?$"
_IMAGE = re.compile(IMAGE_PATTERN)
IMAGE_MAX = 255

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Where no job may write, whatever the policy: the operating system's own directories.
SYSTEM_DIRS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/run", "/sbin", "/sys", "/usr")
SYSTEM_DIRS += ("/var/lib", "/var/run", "/var/log", "/root")


@dataclass(frozen=True)
class PathRole:
    """Marks a field holding a path or URI: whether the job reads from it or writes to it."""

    mode: Literal["read", "write"]


def _image(value: str) -> str:
    if len(value) > IMAGE_MAX or not _IMAGE.match(value):
        raise ValueError(
            f"not a container image reference; write registry/repository[:tag][@sha256:digest], "
            f"e.g. ghcr.io/org/trainer:1.4 (lowercase repository, at most {IMAGE_MAX} characters)"
        )
    return value


def _label_key(value: str) -> str:
    prefix, slash, name = value.rpartition("/")
    if (
        not _LABEL_NAME.match(name)
        or len(name) > 63
        or (slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)))
    ):
        raise ValueError(
            f"'{value[:80]}' is not a Kubernetes label key: [prefix/]name, the name at most 63 letters, digits, "
            "'-', '_' or '.' (starting and ending alphanumeric), the prefix a DNS subdomain"
        )
    return value


def _label_value(value: str) -> str:
    if value and (len(value) > 63 or not _LABEL_NAME.match(value)):
        raise ValueError(
            f"'{value[:80]}' is not a Kubernetes label value: at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending alphanumeric (or empty)"
        )
    return value


def _subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise ValueError("not a Kubernetes object name: lowercase letters, digits, '-' and '.', at most 253")
    return value


def _endpoint(value: str) -> str:
    if value.startswith("engine:"):
        # the built-in inference engine over a local model folder: a read path, confined like any other
        check_path(value[len("engine:") :], "read")
        return value
    problem = None
    if len(value) > 2048 or _CONTROL.search(value) or " " in value:
        problem = "at most 2048 characters, no spaces or control characters"
    else:
        try:
            url = urlsplit(value)
            url.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.hostname:
            problem = "an http(s):// URL with a host, e.g. https://api.example.com/v1, or engine:<model folder>"
        elif url.username is not None or url.password is not None:
            problem = "no user or password inside the URL (credentials come from the site's configuration)"
        elif url.fragment:
            problem = "no #fragment"
    if problem:
        raise ValueError(f"not an endpoint URL: {problem}")
    return value


# datasets the trainer builds in memory (llm_platform.trainer.data.builtin), named where a dataset path goes
BUILTIN_DATASETS = (
    "builtin:stdlib-functions",
    "builtin:safety-refusals",
    "builtin:safety-refusals-keyword",
    "builtin:safety-critique-revise",
)


def local_path(value: str) -> str | None:
    """The local path a path-or-URI field names (`file://` removed), or None for an s3:// URI or a built-in dataset
    (no file at all)."""
    if value.startswith("s3://") or value in BUILTIN_DATASETS:
        return None
    return value.removeprefix("file://")


def check_path(value: str, mode: Literal["read", "write"]) -> str:
    """Rules every path or URI in a spec follows, whatever the site's policy: s3://bucket/key, file:///abs/path or a
    local path; no '..' (a spec must not climb out of where it is put); never a system directory to write to."""
    if not value or len(value) > 4096:
        raise ValueError("a path must be 1 to 4096 characters")
    if _CONTROL.search(value):
        raise ValueError("control characters are not accepted in a path")
    if value.startswith("s3://"):
        bucket, _, key = value[5:].partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise ValueError(
                f"'{bucket}' is not an S3 bucket name (3 to 63 lowercase letters, digits, '.' and '-'); "
                "write s3://bucket/prefix"
            )
        path = key
    elif "://" in value:
        if not value.startswith("file://"):
            raise ValueError("use s3://bucket/prefix, file:///absolute/path or a local path")
        path = value[len("file://") :]
        if not path.startswith("/"):
            raise ValueError("a file:// URI takes an absolute path: file:///data/run (three slashes)")
    else:
        path = value
    if ".." in path.split("/"):
        raise ValueError("'..' is not accepted in a path; write the path it leads to")
    if mode == "write" and path.startswith("/"):
        normal = posixpath.normpath(path)
        if normal == "/" or any(normal == d or normal.startswith(d + "/") for d in SYSTEM_DIRS):
            raise ValueError(f"'{normal}' is a system directory; store artifacts somewhere of your own")
    return value


def _read_path(value: str) -> str:
    return check_path(value, "read")


def _write_path(value: str) -> str:
    return check_path(value, "write")


ImageRef = Annotated[
    str,
    AfterValidator(_image),
    Field(json_schema_extra={"pattern": IMAGE_PATTERN, "maxLength": IMAGE_MAX}),
]
DnsLabel = Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]
LabelKey = Annotated[str, AfterValidator(_label_key)]
LabelValue = Annotated[str, AfterValidator(_label_value), Field(max_length=63)]
SecretName = Annotated[str, AfterValidator(_subdomain), Field(max_length=253)]
EndpointUrl = Annotated[str, AfterValidator(_endpoint), Field(max_length=2048)]
CredentialName = Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]
ReadPath = Annotated[str, AfterValidator(_read_path), PathRole("read")]
WritePath = Annotated[str, AfterValidator(_write_path), PathRole("write")]
