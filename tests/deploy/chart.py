"""Rendering the Helm chart with the real `helm` binary, for the chart's tests and the tests of what it deploys."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.operator.helpers import REPO

CHART = REPO / "helm" / "llm-platform"
HELM = shutil.which("helm") or str(REPO / ".tools" / "bin" / "helm")
needs_helm = pytest.mark.skipif(
    not Path(HELM).exists(), reason="needs the helm binary: `make test` installs it into .tools/bin"
)


def helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([HELM, *args], capture_output=True, text=True, timeout=60)


def template(*settings: str, crds: bool = False) -> list[dict]:
    """The chart's objects for release `rel` in namespace `llm`, with `--set` for each of `settings`."""
    args = ["template", "rel", str(CHART), "--namespace", "llm"] + [a for s in settings for a in ("--set", s)]
    result = helm(*args, *(["--include-crds"] if crds else []))
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def one(docs: list[dict], kind: str, component: str | None = None) -> dict:
    """The one object of `kind` (of the `app.kubernetes.io/component` given, if any)."""
    (found,) = [
        d
        for d in docs
        if d["kind"] == kind
        and (component is None or d["metadata"]["labels"].get("app.kubernetes.io/component") == component)
    ]
    return found
