"""Committed files are checked against their manifest when read: a flipped byte, a lost file or an extra file is an
error naming the key and the file, on local files and on a real S3 server (moto over HTTP)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from llm_platform.api import parse_job
from llm_platform.storage import ArtifactStore, CorruptArtifact
from llm_platform.trainer.stages import is_up_to_date, make_context

from .test_store import write_files

WEIGHTS = bytes(range(256)) * 64  # 16 KiB


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMP_CACHE", str(tmp_path / "cache"))
    if request.param == "file":
        return ArtifactStore.open(f"file://{tmp_path / 'store'}")
    bucket = request.getfixturevalue("s3_bucket")
    return ArtifactStore.open(f"s3://{bucket}/jobs/demo")


def flip_bytes(data: bytes, count: int = 20) -> bytes:
    """The same length, `count` bytes spread over it inverted: what a bad disk or a careless edit does."""
    out = bytearray(data)
    for i in range(0, len(out), max(1, len(out) // count)):
        out[i] ^= 0xFF
    return bytes(out)


def overwrite_in_place(path: Path, data: bytes) -> None:
    """Write `data` into the existing file (same inode), a clock tick after whatever last verified it: file times
    have the kernel's coarse granularity, and a write within the same tick as a check would keep its times."""
    time.sleep(0.05)
    path.write_bytes(data)


def committed_file(store: ArtifactStore, key: str, name: str) -> str:
    return f"{key}/versions/{store.manifest(key).version}/{name}"


def commit_model(store: ArtifactStore, tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_files(out, {"model/config.json": "{}"})
    (out / "model" / "model.safetensors").write_bytes(WEIGHTS)
    store.commit("pretrain", out)


def test_flipped_bytes_are_an_error_naming_key_file_and_hashes(store, tmp_path):
    commit_model(store, tmp_path)
    expected = store.manifest("pretrain").files["model/model.safetensors"]["sha256"]
    key = committed_file(store, "pretrain", "model/model.safetensors")
    store.backend.put_bytes(key, flip_bytes(WEIGHTS))
    with pytest.raises(CorruptArtifact) as err:
        store.fetch("pretrain")
    assert (err.value.key, err.value.file) == ("pretrain", "model/model.safetensors")
    assert err.value.expected == f"sha256 {expected}" and err.value.actual.startswith("sha256 ")
    assert "llmp run --from pretrain" in str(err.value)
    # the size check alone cannot see it (same length): only the content check does
    store.verify("pretrain", content=False)
    with pytest.raises(CorruptArtifact):
        store.verify("pretrain", content=True)


def test_a_deleted_file_is_an_error_even_without_reading_contents(store, tmp_path):
    commit_model(store, tmp_path)
    store.backend.delete(committed_file(store, "pretrain", "model/model.safetensors"))
    for content in (False, True):
        with pytest.raises(CorruptArtifact, match="'model/model.safetensors' should have 16384 bytes but has no such"):
            store.verify("pretrain", content=content)


def test_a_truncated_file_is_caught_by_its_size(store, tmp_path):
    commit_model(store, tmp_path)
    store.backend.put_bytes(committed_file(store, "pretrain", "model/model.safetensors"), WEIGHTS[:100])
    with pytest.raises(CorruptArtifact, match="16384 bytes but has 100 bytes"):
        store.verify("pretrain", content=False)


def test_an_extra_file_in_a_local_version_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMP_CACHE", str(tmp_path / "cache"))
    store = ArtifactStore.open(str(tmp_path / "store"))
    commit_model(store, tmp_path)
    store.backend.put_bytes(committed_file(store, "pretrain", "model/extra.safetensors"), b"injected")
    with pytest.raises(CorruptArtifact, match="'model/extra.safetensors' should have no such file"):
        store.fetch("pretrain")


def test_an_altered_local_copy_of_an_s3_artifact_is_downloaded_again(s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMP_CACHE", str(tmp_path / "cache"))
    store = ArtifactStore.open(f"s3://{s3_bucket}/jobs/demo")
    commit_model(store, tmp_path)
    cached = store.fetch("pretrain")
    overwrite_in_place(cached / "model" / "model.safetensors", flip_bytes(WEIGHTS))
    again = store.fetch("pretrain")
    assert (again / "model" / "model.safetensors").read_bytes() == WEIGHTS


def test_a_file_is_hashed_again_only_once_it_changed(store, tmp_path, monkeypatch):
    """Local stores: the commit records what it wrote; S3: the verified download is recorded. Readers then skip
    re-hashing a file until a write changes its ctime."""
    import llm_platform.storage.store as store_module

    commit_model(store, tmp_path)
    if not store.reads_in_place:
        store.fetch("pretrain")  # the download itself is hashed
    hashed: list[str] = []
    real = store_module._sha256
    monkeypatch.setattr(store_module, "_sha256", lambda path: hashed.append(path.name) or real(path))
    folder = store.fetch("pretrain")
    store.verify("pretrain")
    assert hashed == []
    overwrite_in_place(folder / "model" / "model.safetensors", flip_bytes(WEIGHTS))  # same size, new ctime
    if store.reads_in_place:
        with pytest.raises(CorruptArtifact):
            store.fetch("pretrain")
    else:  # the altered cache copy is dropped and downloaded again
        assert (store.fetch("pretrain") / "model" / "model.safetensors").read_bytes() == WEIGHTS
    assert "model.safetensors" in hashed


JOB = {
    "apiVersion": "llmplatform.dev/v1alpha1",
    "kind": "LLMJob",
    "metadata": {"name": "demo"},
    "spec": {
        "model": {"preset": "llama-tiny"},
        "stages": [
            {"name": "data", "kind": "data", "data": {"sources": [{"type": "stdlib"}]}},
            {"name": "tok", "kind": "tokenizer", "needs": ["data"]},
        ],
    },
}


def commit_stage(job, store: ArtifactStore, stage: str, files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fingerprint = make_context(job, stage, store, Path(tmp)).fingerprint()
        for name, data in files.items():
            (Path(tmp) / "out" / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / "out" / name).write_bytes(data)
        store.commit(stage, Path(tmp) / "out", {"fingerprint": fingerprint})


def test_a_corrupt_or_incomplete_stage_is_not_up_to_date_and_is_never_read(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMP_CACHE", str(tmp_path / "cache"))
    job, store = parse_job(JOB), ArtifactStore.open(str(tmp_path / "store"))
    commit_stage(job, store, "data", {"corpus/train.jsonl": WEIGHTS, "corpus/val.jsonl": b"{}\n"})
    assert is_up_to_date(job, "data", store)[0]

    train = store.backend.local_path(committed_file(store, "data", "corpus/train.jsonl"))
    overwrite_in_place(train, flip_bytes(WEIGHTS))
    fresh, why = is_up_to_date(job, "data", store)
    assert not fresh and "'corpus/train.jsonl'" in why and "sha256" in why
    with pytest.raises(CorruptArtifact, match="corpus/train.jsonl"):  # the consumer stage refuses it too
        make_context(job, "tok", store, tmp_path / "scratch").input("corpus")

    commit_stage(job, store, "data", {"corpus/train.jsonl": WEIGHTS, "corpus/val.jsonl": b"{}\n"})
    assert is_up_to_date(job, "data", store)[0]
    store.backend.local_path(committed_file(store, "data", "corpus/val.jsonl")).unlink()
    fresh, why = is_up_to_date(job, "data", store)
    assert not fresh and why == "its committed file 'corpus/val.jsonl' has no such file instead of 3 bytes"

    store.backend.put_bytes("data/manifest.json", b'{"key": "data", "version": "../x"')  # torn or altered
    fresh, why = is_up_to_date(job, "data", store)
    assert not fresh and "data/manifest.json is not a valid manifest" in why
    commit_stage(job, store, "data", {"corpus/train.jsonl": WEIGHTS})  # running again replaces it
    assert is_up_to_date(job, "data", store)[0]


def test_on_s3_a_deleted_file_makes_the_stage_stale_without_downloading(s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMP_CACHE", str(tmp_path / "cache"))
    job, store = parse_job(JOB), ArtifactStore.open(f"s3://{s3_bucket}/job")
    commit_stage(job, store, "data", {"corpus/train.jsonl": WEIGHTS})
    assert is_up_to_date(job, "data", store)[0]
    store.backend.delete(committed_file(store, "data", "corpus/train.jsonl"))
    assert is_up_to_date(job, "data", store) == (
        False,
        "its committed file 'corpus/train.jsonl' has no such file instead of 16384 bytes",
    )
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("train.jsonl"))


@pytest.mark.parametrize(
    "change",
    [
        {"files": {"../../../escaped.txt": {"size": 1, "sha256": "0" * 64}}},
        {"files": {"/etc/hostname": {"size": 1, "sha256": "0" * 64}}},
        {"version": "../../elsewhere"},
        {"files": {"f": {"size": "1", "sha256": "0" * 64}}},
    ],
)
def test_a_manifest_whose_names_leave_the_artifact_is_refused(store, tmp_path, change):
    import json

    from llm_platform.storage import StoreError

    commit_model(store, tmp_path)
    manifest = json.loads(store.backend.get_bytes("pretrain/manifest.json"))
    store.backend.put_bytes("pretrain/manifest.json", json.dumps({**manifest, **change}).encode())
    with pytest.raises(StoreError, match="pretrain/manifest.json is not a valid manifest"):
        store.fetch("pretrain")
    assert not any(tmp_path.rglob("escaped.txt"))
