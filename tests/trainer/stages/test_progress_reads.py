"""Reading a job's status back from its store (`stored_stages`, `read_stage_status`), local and on S3: the store is
written by the job's own processes, so these reads cost what the stages cost and a hostile file cannot make them
large or make them fail."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llm_platform.api.status import StageStatus, progress_key
from llm_platform.cli import app
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.stages.progress import (
    MAX_PROGRESS_BYTES,
    read_progress,
    read_stage_status,
    stored_stages,
)


@pytest.fixture
def store(any_store) -> ArtifactStore:
    return any_store


def write_status(store: ArtifactStore, stage: str, **fields) -> None:
    store.write_json(progress_key(stage), StageStatus(**fields).model_dump(mode="json", exclude_none=True))


def test_stored_stages_are_the_top_level_folders_with_a_progress_file_or_a_manifest(store, tmp_path):
    write_status(store, "pretrain", phase="Running", step=3)
    for step in range(3):  # checkpoints and their own manifests below a stage are not stages
        store.backend.put_bytes(f"pretrain/checkpoints/step_{step}/node_0/manifest.json", b"{}")
        store.backend.put_bytes(f"pretrain/checkpoints/step_{step}/node_0/model.bin", b"x" * 10)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "corpus.jsonl").write_text("{}\n")
    store.commit("data", tmp_path / "out")  # committed, no progress file
    store.backend.put_bytes("scratch/notes/progress.json", b"{}")  # a mark one level down: not a stage
    store.backend.put_bytes("progress.json", b"{}")  # a file at the top: not a stage
    assert stored_stages(store) == (["data", "pretrain"], False)


def test_stored_stages_look_at_a_bounded_number_of_entries_and_say_so(store):
    for name in ("a", "b", "c"):
        write_status(store, name, phase="Succeeded")
    names, more = stored_stages(store, limit=2)
    assert more and len(names) == 2
    if store.backend.local_path("") is None:
        assert names == ["a", "b"]  # S3 lists by name


def test_llmp_status_of_a_store_with_too_many_top_level_folders_shows_the_first_and_says_so(tmp_path):
    store = ArtifactStore.open(str(tmp_path))
    for i in range(1001):
        (tmp_path / f"junk-{i}").mkdir()
    shown = CliRunner().invoke(app, ["status", str(tmp_path), "--json"])
    assert shown.exit_code == 0, shown.output
    assert "more than 1,000 entries at its top level; only the first were looked at" in shown.stderr
    assert json.loads(shown.stdout)["stages"] == {}
    write_status(store, "data", phase="Running")
    assert CliRunner().invoke(app, ["status", str(tmp_path)]).exit_code == 0


def test_a_progress_file_over_the_limit_is_not_read(store):
    """A job could write a 2 GB progress file; the status says so after reading at most limit + 1 bytes."""
    big = b'{"phase": "Running", "message": "' + b"x" * MAX_PROGRESS_BYTES + b'"}'
    store.backend.put_bytes(progress_key("train"), big)
    received = []
    if store.backend.local_path("") is None:  # what the S3 server sent, as botocore saw it
        events = store.backend.client.meta.events
        events.register("after-call.s3.GetObject", lambda http_response, **kw: received.append(http_response))
    status = read_stage_status(store, "train")
    key = f"{store.uri}/train/progress.json"
    assert (status.phase, status.message) == (
        "Pending",
        f"{key} is {len(big):,} bytes, over the 1,048,576 bytes a progress file may have",
    )
    if received:
        sent = [int(r.headers["content-length"]) for r in received if r.status_code < 300]  # not the manifest's 404
        assert sent == [MAX_PROGRESS_BYTES + 1]
    store.backend.put_bytes(progress_key("train"), big[: MAX_PROGRESS_BYTES - 40] + b'"}')  # just under: read
    assert read_stage_status(store, "train").phase == "Running"


def test_a_huge_sparse_local_progress_file_is_refused_at_once(tmp_path):
    store = ArtifactStore.open(str(tmp_path))
    (tmp_path / "train").mkdir()
    with open(tmp_path / "train" / "progress.json", "wb") as f:
        f.truncate(4 << 30)  # 4 GiB that take no disk
    assert "is 4,294,967,296 bytes, over the 1,048,576 bytes" in read_stage_status(store, "train").message


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b'{"phase": "Runn', "is not JSON"),
        (b"\xff\xfe{}", "is not JSON"),
        (b"[" * 200_000 + b"]" * 200_000, "is not JSON"),  # nested past Python's stack
        (b"", "is not JSON"),
        (b'{"phase": "Exploded", "message": "secret-value"}', "is not a stage status (phase: Input should be"),
        (b'["a list"]', "is not a stage status (the whole file: Input should be"),
    ],
)
def test_a_progress_file_that_is_not_a_stage_status_gives_a_status_that_says_why(store, data, problem):
    store.backend.put_bytes(progress_key("eval"), data)
    status = read_stage_status(store, "eval")
    assert status.phase == "Pending"
    assert status.message.startswith(f"{store.uri}/eval/progress.json {problem}")
    assert "secret-value" not in status.message  # the file's content is never quoted
    with pytest.raises(ValueError, match="eval/progress.json"):
        read_progress(store, "eval")


def test_a_committed_stage_with_a_bad_progress_file_reads_as_committed_with_the_problem(store, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "f.txt").write_text("hi")
    manifest = store.commit("data", tmp_path / "out")
    store.backend.put_bytes(progress_key("data"), b"not json")
    status = read_stage_status(store, "data")
    assert (status.phase, status.version) == ("Succeeded", manifest.version)
    assert status.message == f"{store.uri}/data/progress.json is not JSON; it is not read"


def test_a_local_progress_file_that_is_a_fifo_does_not_hang_the_status(tmp_path):
    import os

    store = ArtifactStore.open(str(tmp_path))
    (tmp_path / "data").mkdir()
    os.mkfifo(tmp_path / "data" / "progress.json")
    status = read_stage_status(store, "data")
    assert "cannot be read" in status.message and "not a regular file" in status.message
    assert stored_stages(store) == ([], False)  # nor is a FIFO taken for a progress file when listing
