"""Fixtures for the operator's end-to-end tests."""

from __future__ import annotations

import pytest

from .cluster import Cluster


@pytest.fixture
def cluster():
    """An emulated Kubernetes API on loopback; start the operator with `cluster.start_operator()`."""
    c = Cluster()
    yield c
    c.close()
