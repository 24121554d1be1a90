"""Downloads are cached only when complete: a `model.from` s3:// folder or a committed S3 artifact whose download
is killed midway leaves nothing that a later run would take for the model (real S3 server: moto over HTTP)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import boto3
import pytest

from llm_platform.storage import ArtifactStore, downloads
from llm_platform.trainer.stages.context import fetch_uri

from .test_store import read_all, write_files

FILES = {"config.json": '{"model_type": "llama"}', "model-1.safetensors": "a" * 3000, "model-2.safetensors": "b" * 3000}

KILLED_DOWNLOAD = textwrap.dedent("""
    import os, signal, sys
    from llm_platform.storage import ArtifactStore, S3Backend
    from llm_platform.trainer.stages.context import fetch_uri

    get_file = S3Backend.get_file

    def die_after_two_files(self, key, dest, done=[]):
        get_file(self, key, dest)
        done.append(key)
        if len(done) == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    S3Backend.get_file = die_after_two_files
    what, uri, store_uri = sys.argv[1:]
    if what == "model.from":
        fetch_uri(uri, ArtifactStore.open(store_uri))
    else:
        ArtifactStore.open(store_uri).fetch(uri)
""")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LLMP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def upload(bucket: str, prefix: str, files: dict[str, str]) -> None:
    client = boto3.client("s3")
    for name, text in files.items():
        client.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=text.encode())


def kill_during_download(what: str, uri: str, store_uri: str) -> None:
    proc = subprocess.run([sys.executable, "-c", KILLED_DOWNLOAD, what, uri, store_uri], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()


def complete_files(cache: Path) -> list[Path]:
    """Files in the cache outside temporary download folders: what a reader could find."""
    return [p for p in cache.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.parts)]


def partial_downloads(cache: Path) -> list[Path]:
    return list(cache.rglob(".download-*"))


def test_an_interrupted_model_from_download_is_not_cached(s3_bucket, cache, tmp_path, monkeypatch):
    upload(s3_bucket, "hub/llama", FILES)
    uri, store_uri = f"s3://{s3_bucket}/hub/llama", str(tmp_path / "store")
    kill_during_download("model.from", uri, store_uri)
    assert complete_files(cache) == [] and partial_downloads(cache) != []
    monkeypatch.setattr(downloads, "ABANDONED_AFTER_S", 0.0)
    folder = fetch_uri(uri, ArtifactStore.open(store_uri))
    assert read_all(folder) == FILES
    assert fetch_uri(uri, ArtifactStore.open(store_uri)) == folder  # complete now: served from the cache
    assert partial_downloads(cache) == []  # the killed download's remains were removed, not left to fill the disk


def test_a_model_from_folder_replaced_upstream_is_downloaded_again(s3_bucket, cache, tmp_path):
    upload(s3_bucket, "hub/llama", FILES)
    store = ArtifactStore.open(str(tmp_path / "store"))
    first = fetch_uri(f"s3://{s3_bucket}/hub/llama", store)
    upload(s3_bucket, "hub/llama", {"model-1.safetensors": "c" * 3000})  # same size, new weights
    second = fetch_uri(f"s3://{s3_bucket}/hub/llama", store)
    assert second != first and read_all(second)["model-1.safetensors"] == "c" * 3000


def test_an_empty_model_from_folder_is_a_clear_error(s3_bucket, cache, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"spec.model.from: s3://.*/nothing holds no files"):
        fetch_uri(f"s3://{s3_bucket}/nothing", ArtifactStore.open(str(tmp_path / "store")))


def test_an_interrupted_artifact_download_is_not_cached(s3_bucket, cache, tmp_path, monkeypatch):
    store = ArtifactStore.open(f"s3://{s3_bucket}/job")
    store.commit("pretrain", write_files(tmp_path / "out", FILES))
    kill_during_download("artifact", "pretrain", store.uri)
    assert complete_files(cache) == []
    monkeypatch.setattr(downloads, "ABANDONED_AFTER_S", 0.0)
    assert read_all(store.fetch("pretrain")) == FILES
    assert partial_downloads(cache) == []


def test_a_download_in_progress_is_not_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(downloads, "ABANDONED_AFTER_S", 0.0)
    with downloads.staged_download(tmp_path / "a") as running:
        (running / "f").write_text("x")
        assert downloads.remove_abandoned(tmp_path) == []  # its lock is held: another process's sweep skips it
        assert (running / "f").exists()
    assert (tmp_path / "a" / "f").read_text() == "x" and partial_downloads(tmp_path) == []


def test_an_object_key_that_leads_out_of_the_download_folder_is_refused(s3_bucket, cache, tmp_path):
    upload(s3_bucket, "hub/evil", {"config.json": "{}", "../../../../escaped.txt": "x"})
    from llm_platform.storage import StoreError

    with pytest.raises(StoreError, match="not a file path"):
        fetch_uri(f"s3://{s3_bucket}/hub/evil", ArtifactStore.open(str(tmp_path / "store")))
    assert not any(tmp_path.rglob("escaped.txt"))
