"""`llmp render` of every example, compared with the reviewed output in golden/. After an intended change, rerun
with LLMP_UPDATE_GOLDEN=1 and review the diff of golden/ like any other code change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llm_platform.cli_operator import render_manifests

from .helpers import CLUSTER_EXAMPLES

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("LLMP_UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize("path", CLUSTER_EXAMPLES, ids=lambda p: p.stem)
def test_render_matches_golden(path: Path):
    rendered = render_manifests(path, image="ghcr.io/llm-platform/trainer:0.1.0")  # not the package version
    golden = GOLDEN / f"{path.stem}.yaml"
    if UPDATE:
        golden.write_text(rendered)
    assert golden.exists(), f"no golden file for {path.name}; run with LLMP_UPDATE_GOLDEN=1 to create it"
    assert rendered == golden.read_text(), f"{path.name} renders differently; LLMP_UPDATE_GOLDEN=1 to accept"


def test_every_golden_file_has_an_example():
    assert sorted(p.stem for p in GOLDEN.glob("*.yaml")) == sorted(p.stem for p in CLUSTER_EXAMPLES)
