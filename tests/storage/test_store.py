"""The artifact store over local files and a real S3 server (moto over HTTP): atomic, versioned commits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llm_platform.storage import ArtifactStore, StoreError


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMP_CACHE", str(tmp_path / "cache"))
    if request.param == "file":
        return ArtifactStore.open(f"file://{tmp_path / 'store'}")
    bucket = request.getfixturevalue("s3_bucket")
    return ArtifactStore.open(f"s3://{bucket}/jobs/demo")


def write_files(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def read_all(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in folder.rglob("*") if p.is_file()}


def test_commit_then_fetch_round_trips(store, tmp_path):
    files = {"model/config.json": "{}", "model/weights.bin": "x" * 5000, "report.json": "[1]"}
    manifest = store.commit("pretrain", write_files(tmp_path / "out", files), {"metrics": {"loss": 1.5}})
    assert store.manifest("pretrain").version == manifest.version
    assert store.manifest("pretrain").meta == {"metrics": {"loss": 1.5}}
    assert read_all(store.fetch("pretrain")) == files
    assert manifest.files["model/weights.bin"]["size"] == 5000


def test_missing_artifact_is_a_clear_error(store):
    assert store.manifest("nothing") is None
    with pytest.raises(StoreError, match="no committed artifact 'nothing'"):
        store.fetch("nothing")


def test_writer_commits_only_on_success(store):
    with pytest.raises(RuntimeError), store.writer("stage") as out:
        (out / "half.txt").write_text("partial")
        raise RuntimeError("the runner failed")
    assert store.manifest("stage") is None
    with store.writer("stage", {"ok": True}) as out:
        (out / "full.txt").write_text("complete")
    assert read_all(store.fetch("stage")) == {"full.txt": "complete"}


def test_reader_of_the_old_version_is_not_disturbed_by_a_new_commit(store, tmp_path):
    store.commit("tok", write_files(tmp_path / "v1", {"a.txt": "one", "b.txt": "one"}))
    old = store.manifest("tok")
    store.commit("tok", write_files(tmp_path / "v2", {"a.txt": "two"}))
    # a reader holding the old manifest still finds every file of the old version, unmixed
    for name in old.files:
        data = store.backend.get_bytes(f"tok/versions/{old.version}/{name}")
        assert data == b"one"
    assert read_all(store.fetch("tok")) == {"a.txt": "two"}


def test_keys_and_pointers(store, tmp_path):
    for step in (100, 200):
        store.commit(f"pre/checkpoints/step_{step}", write_files(tmp_path / str(step), {"w": str(step)}))
    store.write_json("pre/checkpoints/latest", {"step": 200})
    assert store.keys("pre/checkpoints") == ["pre/checkpoints/step_100", "pre/checkpoints/step_200"]
    assert store.read_json("pre/checkpoints/latest") == {"step": 200}
    store.delete("pre/checkpoints/step_100")
    assert store.keys("pre/checkpoints") == ["pre/checkpoints/step_200"]


CRASH = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from llm_platform.storage import ArtifactStore

    store = ArtifactStore.open(sys.argv[1])
    put_bytes = store.backend.put_bytes

    def die_before_manifest(key, data):
        if key.endswith("manifest.json"):
            os.kill(os.getpid(), signal.SIGKILL)  # every file is uploaded; the commit point is never reached
        put_bytes(key, data)

    store.backend.put_bytes = die_before_manifest
    store.commit("pretrain", Path(sys.argv[2]))
""")


def test_crash_between_upload_and_commit_leaves_the_old_version(store, tmp_path, monkeypatch):
    store.commit("pretrain", write_files(tmp_path / "v1", {"w.bin": "good"}))
    before = store.manifest("pretrain")
    write_files(tmp_path / "v2", {"w.bin": "new", "extra.bin": "new"})
    proc = subprocess.run([sys.executable, "-c", CRASH, store.uri, str(tmp_path / "v2")], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    # readers still see exactly the old commit; the new files were uploaded but are unreachable
    assert store.manifest("pretrain").version == before.version
    assert read_all(store.fetch("pretrain")) == {"w.bin": "good"}
    orphans = {k.split("/")[2] for k in store.backend.list("pretrain/versions")} - {before.version}
    assert len(orphans) == 1
    assert store.gc("pretrain") == sorted(orphans)
    assert {k.split("/")[2] for k in store.backend.list("pretrain/versions")} == {before.version}


def test_manifest_lists_sizes_and_hashes(store, tmp_path):
    manifest = store.commit("x", write_files(tmp_path / "x", {"f": "abc"}))
    stored = json.loads(store.backend.get_bytes("x/manifest.json"))
    assert stored["files"]["f"]["size"] == 3
    assert stored["files"]["f"]["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert stored["version"] == manifest.version


def test_s3_uri_without_bucket_is_rejected():
    with pytest.raises(StoreError, match="names no bucket"):
        ArtifactStore.open("s3:///prefix")


def test_the_tail_of_an_object_is_read_without_the_rest(store):
    """`get_tail`: the last bytes and the whole size, by one ranged read on S3; an empty object has no last byte."""
    data = bytes(range(256)) * 40  # 10 KiB
    store.backend.put_bytes("stage/live/console.log", data)
    assert store.backend.get_tail("stage/live/console.log", 100) == (data[-100:], len(data))
    assert store.backend.get_tail("stage/live/console.log", 1 << 20) == (data, len(data))
    store.backend.put_bytes("stage/live/empty.log", b"")
    assert store.backend.get_tail("stage/live/empty.log", 100) == (b"", 0)
    assert store.backend.get_tail("stage/live/absent.log", 100) is None


def test_child_folders_lists_one_level_only_and_stops_at_its_limit(store):
    """`child_folders`: the folders directly inside, never the keys below them nor the files beside them; past
    `limit` entries (files count) it stops and says there were more."""
    for key in ("b/x.json", "b/deep/er/y.bin", "a/z.json", "c/d/e.txt", "top.json", "b/c/f.txt"):
        store.backend.put_bytes(key, b"{}")
    assert store.backend.child_folders("", 100) == (["a", "b", "c"], False)
    assert store.backend.child_folders("b", 100) == (["c", "deep"], False)
    assert store.backend.child_folders("absent", 100) == ([], False)
    names, more = store.backend.child_folders("", 2)
    assert more and len(names) <= 2 and set(names) <= {"a", "b", "c"}
    assert store.backend.child_folders("", 4) == (["a", "b", "c"], False)  # exactly its 4 entries: no more


def test_exists_asks_for_one_key(store):
    store.backend.put_bytes("stage/progress.json", b"{}")
    assert store.backend.exists("stage/progress.json")
    assert not store.backend.exists("stage/manifest.json") and not store.backend.exists("stage")


def test_child_folders_on_s3_reads_page_after_page_up_to_its_limit(s3_bucket, monkeypatch):
    """A listing comes in pages (1,000 keys each; 2 here, to need several): every folder of the first `limit`
    entries is found, by name, and files beside them count towards it."""
    from llm_platform.storage import backends

    monkeypatch.setattr(backends, "LIST_PAGE", 2)
    store = ArtifactStore.open(f"s3://{s3_bucket}/job")
    names = [f"s{i}" for i in range(7)]
    for name in names:
        store.backend.put_bytes(f"{name}/progress.json", b"{}")
    store.backend.put_bytes("s3.txt", b"")  # between s3/ and s4/ by name
    requests = []
    store.backend.client.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: requests.append(kw))
    assert store.backend.child_folders("", 100) == (names, False)
    assert len(requests) == 4  # 8 entries, 2 a page
    requests.clear()
    assert store.backend.child_folders("", 5) == (names[:4], True)
    assert len(requests) == 3  # 2 + 2 + 1: never past the limit


def test_a_local_child_folder_that_is_a_link_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    (outside / "secret").mkdir(parents=True)
    store = ArtifactStore.open(str(tmp_path / "store"))
    store.backend.put_bytes("data/progress.json", b"{}")
    (tmp_path / "store" / "linked").symlink_to(outside, target_is_directory=True)
    assert store.backend.child_folders("", 100) == (["data"], False)
    assert store.backend.child_folders("linked", 100) == ([], False)


def test_a_local_tail_read_refuses_a_fifo_or_a_device_instead_of_blocking(tmp_path):
    """A job could leave a FIFO (an open would wait for a writer) or a link to /dev/zero (reads never end)."""
    store = ArtifactStore.open(str(tmp_path / "store"))
    (tmp_path / "store" / "data").mkdir(parents=True)
    os.mkfifo(tmp_path / "store" / "data" / "progress.json")
    (tmp_path / "store" / "data" / "console.log").symlink_to("/dev/zero")
    for key in ("data/progress.json", "data/console.log"):
        with pytest.raises(StoreError, match=f"'{key}' in the store is not a regular file"):
            store.backend.get_tail(key, 100)


def test_manifests_and_pointers_a_job_wrote_too_large_are_refused_unread(store, monkeypatch):
    """The operator and the jobs API read these files with their own memory; a job writes them. A file over the
    limit is a StoreError naming it and its size, after one read of at most limit + 1 bytes."""
    import llm_platform.storage.store as store_module

    monkeypatch.setattr(store_module, "MAX_MANIFEST_BYTES", 1024)
    monkeypatch.setattr(store_module, "MAX_JSON_BYTES", 512)
    store.backend.put_bytes("data/manifest.json", b" " * 2048 + b"{}")
    store.backend.put_bytes("train/checkpoints/latest", json.dumps({"step": 1, "pad": "x" * 600}).encode())
    asked = []
    tail = store.backend.get_tail
    monkeypatch.setattr(store.backend, "get_tail", lambda key, n: asked.append(n) or tail(key, n))
    with pytest.raises(
        StoreError, match=r"/data/manifest.json is 2,050 bytes, over the 1,024 bytes a manifest may have$"
    ):
        store.manifest("data")
    with pytest.raises(
        StoreError, match=r"/train/checkpoints/latest is 6\d\d bytes, over the 512 bytes such a file may have$"
    ):
        store.read_json("train/checkpoints/latest")
    assert asked == [1025, 513]
    store.backend.put_bytes("train/checkpoints/latest", b'{"step": 2}')
    assert store.read_json("train/checkpoints/latest") == {"step": 2} and store.manifest("nothing") is None
