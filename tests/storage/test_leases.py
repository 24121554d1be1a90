"""One writer per key, between real processes: a second writer of a key is refused while the first one uploads, so
it can never publish a manifest whose files the other's cleanup deleted; a crashed writer does not block the key
(locally at once, on S3 once its lease expires)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from llm_platform.storage import ArtifactStore, LeaseHeld, LeaseLost
from tests.processes import llmp

from .test_store import read_all, write_files

SLOW_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from llm_platform.storage import ArtifactStore

    uri, folder, gate, ttl = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])
    store = ArtifactStore.open(uri)
    store.lease_ttl_s = ttl
    put_file = store.backend.put_file

    def slow_put(key, source):  # upload one file, then wait for the test to say go on
        put_file(key, source)
        (gate.parent / "uploading").touch()
        while not gate.exists():
            time.sleep(0.02)

    store.backend.put_file = slow_put
    store.commit("pretrain", folder)
""")


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMP_CACHE", str(tmp_path / "cache"))
    if request.param == "file":
        return ArtifactStore.open(f"file://{tmp_path / 'store'}")
    bucket = request.getfixturevalue("s3_bucket")
    return ArtifactStore.open(f"s3://{bucket}/jobs/demo")


def start_slow_writer(store: ArtifactStore, tmp_path: Path, ttl: float = 60.0) -> tuple[subprocess.Popen, Path]:
    folder = write_files(tmp_path / "a", {"w.bin": "writer A", "x.bin": "writer A"})
    gate = tmp_path / "gate" / "go"
    gate.parent.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, store.uri, str(folder), str(gate), str(ttl)], stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while not (gate.parent / "uploading").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "writer A never started uploading"
        time.sleep(0.02)
    return proc, gate


def test_a_second_writer_is_refused_while_the_first_uploads(store, tmp_path):
    proc, gate = start_slow_writer(store, tmp_path)
    with pytest.raises(LeaseHeld, match=f"'pretrain' is being written by process {proc.pid} on "):
        store.commit("pretrain", write_files(tmp_path / "b", {"w.bin": "writer B"}))
    gate.touch()
    assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()
    # A's commit is whole: every file its manifest names is there, and none of B's
    assert read_all(store.fetch("pretrain")) == {"w.bin": "writer A", "x.bin": "writer A"}
    store.commit("pretrain", write_files(tmp_path / "b", {"w.bin": "writer B"}))  # A is done: B may write now
    assert read_all(store.fetch("pretrain")) == {"w.bin": "writer B"}


def test_a_killed_writer_releases_a_local_key_at_once(tmp_path):
    store = ArtifactStore.open(str(tmp_path / "store"))
    proc, _ = start_slow_writer(store, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store.commit("pretrain", write_files(tmp_path / "b", {"w.bin": "writer B"}))
    assert read_all(store.fetch("pretrain")) == {"w.bin": "writer B"}
    assert len({k.split("/")[2] for k in store.backend.list("pretrain/versions")}) == 1  # A's upload was cleaned
    assert not (tmp_path / "store" / "pretrain" / ".lease").exists()  # released leases leave no file behind


def test_a_killed_writer_releases_an_s3_key_when_its_lease_expires(s3_bucket, tmp_path):
    store = ArtifactStore.open(f"s3://{s3_bucket}/jobs/demo")
    proc, _ = start_slow_writer(store, tmp_path, ttl=5.0)  # renewed every 1.7 s: >= 3.3 s left when killed
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    b = write_files(tmp_path / "b", {"w.bin": "writer B"})
    with pytest.raises(LeaseHeld, match="lease expires in"):
        store.commit("pretrain", b)
    with store.lease("pretrain", wait_s=30):  # a retried pod waits out the dead one's lease instead of failing
        store.commit("pretrain", b)
    assert read_all(store.fetch("pretrain")) == {"w.bin": "writer B"}


def test_an_s3_writer_that_lost_its_lease_publishes_nothing(s3_bucket):
    backend = ArtifactStore.open(f"s3://{s3_bucket}/jobs/demo").backend
    paused = backend.lease("pretrain", ttl_s=0.5)
    paused.acquire()
    paused._stop.set()  # as if the process froze: no renewals
    time.sleep(0.7)
    taker = backend.lease("pretrain", ttl_s=30)
    taker.acquire()  # expired: taken over with a conditional write on the expired lease's ETag
    with pytest.raises(LeaseLost, match="not publishing"):
        paused.check()
    paused.release()  # must not delete the taker's lease
    with pytest.raises(LeaseHeld):
        backend.lease("pretrain", ttl_s=30).acquire()
    taker.release()
    again = backend.lease("pretrain", ttl_s=30)
    again.acquire()
    again.release()


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from llm_platform.storage import ArtifactStore

    with ArtifactStore.open(sys.argv[1]).lease("data"):
        Path(sys.argv[2]).touch()
        time.sleep(120)
""")

JOB = """\
apiVersion: llmplatform.dev/v1alpha1
kind: LLMJob
metadata: {name: demo}
spec:
  stages:
  - {name: data, kind: data, data: {sources: [{type: stdlib, include: "json/*.py"}]}}
"""


def test_llmp_stage_run_refuses_a_stage_another_process_is_running(tmp_path):
    uri, held = f"file://{tmp_path / 'store'}", tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, uri, str(held)])
    try:
        while not held.exists():
            assert holder.poll() is None
            time.sleep(0.02)
        job = tmp_path / "job.yaml"
        job.write_text(JOB)
        result = llmp(
            "stage", "run", "--job", str(job), "--stage", "data", "--storage", uri, env={**os.environ, "COLUMNS": "300"}
        )
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 2, result.stderr
    assert f"'data' is being written by process {holder.pid} on " in result.stderr
    assert not ArtifactStore.open(uri).exists("data")
