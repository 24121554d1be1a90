"""The local folders a job may read from and write to on this machine, as its configuration says.

A server or operator that runs other people's jobs sets LLMP_READ_ROOTS / LLMP_WRITE_ROOTS (os.pathsep-separated) for
itself and for the stage processes it starts. The spec is checked against them at submit time (api/policy.py); the
readers check again when they open files (`check_local`), because a glob or a symlink can lead somewhere the spec's
text did not say. Unset means unrestricted: the local user's own machine. No pydantic here: the trainer imports it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

Mode = Literal["read", "write"]
ENV = {"read": "LLMP_READ_ROOTS", "write": "LLMP_WRITE_ROOTS"}


def roots_from(raw: str | None) -> tuple[Path, ...] | None:
    """Folders from an os.pathsep-separated list, resolved; None when the list is not given."""
    if raw is None:
        return None
    return tuple(Path(item.strip()).resolve() for item in raw.split(os.pathsep) if item.strip())


def configured_roots(mode: Mode, environ: Mapping[str, str] = os.environ) -> tuple[Path, ...] | None:
    return roots_from(environ.get(ENV[mode]))


def is_inside(path: str | Path, roots: tuple[Path, ...]) -> bool:
    """Whether `path`, with every symlink resolved, is one of `roots` or lies below one."""
    resolved = Path(os.path.realpath(Path(path).expanduser()))
    return any(resolved == root or resolved.is_relative_to(root) for root in roots)


def check_local(path: str | Path, mode: Mode, what: str, environ: Mapping[str, str] = os.environ) -> None:
    """Raise PermissionError naming `what` (the spec field) when this machine's configuration keeps `path` out."""
    roots = configured_roots(mode, environ)
    if roots is not None and not is_inside(path, roots):
        allowed = ", ".join(str(r) for r in roots) or "none"
        verb = "read from" if mode == "read" else "write to"
        raise PermissionError(f"{what}: {path} resolves outside the folders jobs may {verb} here ({allowed})")
