"""Cleanup deletes exact folders, on a real S3 server (moto over HTTP) where a prefix is only the start of a key:
cleaning stage `data` must not touch `data-v2`, and a job's cleanup must not touch another job's keys."""

from __future__ import annotations

import pytest

from llm_platform.api import parse_job
from llm_platform.operator.artifacts import ArtifactProbe
from llm_platform.storage import ArtifactStore

from .test_store import read_all, write_files


@pytest.fixture
def s3_store(s3_bucket, tmp_path, monkeypatch) -> ArtifactStore:
    monkeypatch.setenv("LLMP_CACHE", str(tmp_path / "cache"))
    return ArtifactStore.open(f"s3://{s3_bucket}/team")


def commit(store: ArtifactStore, key: str, tmp_path) -> None:
    store.commit(key, write_files(tmp_path / key.replace("/", "_"), {"f.txt": key}))


def test_deleting_a_stage_leaves_a_stage_whose_name_it_prefixes(s3_store, tmp_path):
    for key in ("data", "data-v2", "data/checkpoints/step_1"):
        commit(s3_store, key, tmp_path)
    s3_store.delete("data")
    assert not s3_store.exists("data")
    assert read_all(s3_store.fetch("data-v2")) == {"f.txt": "data-v2"}
    s3_store.backend.delete_prefix("data")
    assert s3_store.keys("") == ["data-v2"]
    assert read_all(s3_store.fetch("data-v2")) == {"f.txt": "data-v2"}


def test_gc_deletes_exact_version_folders(s3_store, tmp_path):
    commit(s3_store, "data", tmp_path)
    kept = s3_store.manifest("data").version
    # an orphan version (a crashed upload) and a key that merely starts with the same characters
    s3_store.backend.put_bytes("data/versions/20990101T000000-dead/f.txt", b"orphan")
    s3_store.backend.put_bytes(f"data/versions/{kept}-copy/f.txt", b"not a version of ours to keep")
    assert s3_store.gc("data") == sorted(["20990101T000000-dead", f"{kept}-copy"])
    assert read_all(s3_store.fetch("data")) == {"f.txt": "data"}


def test_keys_lists_a_folder_not_a_prefix(s3_store, tmp_path):
    for key in ("pre/checkpoints/step_1", "pre/checkpoints-old/step_1"):
        commit(s3_store, key, tmp_path)
    assert s3_store.keys("pre/checkpoints") == ["pre/checkpoints/step_1"]


def test_a_jobs_cleanup_leaves_another_jobs_stage_named_like_its_own(s3_store, tmp_path):
    commit(s3_store, "data", tmp_path)
    commit(s3_store, "data-v2", tmp_path)  # another job's stage in the same storage URI
    job = parse_job(
        {
            "apiVersion": "llmplatform.dev/v1alpha1",
            "kind": "LLMJob",
            "metadata": {"name": "one"},
            "spec": {
                "storage": {"uri": s3_store.uri},
                "stages": [{"name": "data", "kind": "data", "data": {"sources": [{"type": "stdlib"}]}}],
            },
        }
    )
    ArtifactProbe().delete_stage_artifacts(job)
    assert s3_store.keys("") == ["data-v2"]
    assert read_all(s3_store.fetch("data-v2")) == {"f.txt": "data-v2"}


def test_a_store_prefix_is_a_folder_too(s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMP_CACHE", str(tmp_path / "cache"))
    team, team_x = ArtifactStore.open(f"s3://{s3_bucket}/team"), ArtifactStore.open(f"s3://{s3_bucket}/team-x")
    commit(team, "data", tmp_path)
    commit(team_x, "data", tmp_path)
    team.backend.delete_prefix("data")
    assert not team.exists("data") and team_x.exists("data")
    team.backend.delete_prefix("")  # never the whole store
    assert team_x.exists("data")
