"""Fixtures shared across the suite: the shared data folder, and a real S3 server (moto, over HTTP on loopback)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

# Credential lookups (preflight asks botocore whether S3 credentials exist) must never ask the EC2 instance metadata
# service: tests reach loopback only. Set before any test runs, so stage subprocesses inherit it too.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or a skip with the reason when it is absent (a user's fresh clone has none)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the team's shared data folder beside the repository); absent here")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API server (moto's server mode) on loopback; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """Environment for boto3 to reach the moto server, as a pod would get it from a Secret."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    return s3_server


@pytest.fixture
def s3_bucket(s3_env):
    """A fresh bucket on the moto server; yields its name."""
    import uuid

    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
def any_store(request, tmp_path):
    """An artifact store in a local folder, then one on the moto S3 server: a test taking it runs on both."""
    from llm_platform.storage import ArtifactStore

    if request.param == "local":
        return ArtifactStore.open(str(tmp_path / "store"))
    bucket = request.getfixturevalue("s3_bucket")
    return ArtifactStore.open(f"s3://{bucket}/job")


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory) -> Path:
    """A tiny model taught two chats word for word (tests/services/serving/tiny_model.py), built once per session
    for the serving, CLI, stage, export and dashboard tests."""
    from tests.services.serving.tiny_model import build

    return build(tmp_path_factory.mktemp("tiny-chat-model"))
