"""Reading a job's checkpoints and committed versions from a real (local) artifact store."""

from __future__ import annotations

import tempfile
from pathlib import Path

from llm_platform.api import parse_job
from llm_platform.operator.artifacts import ArtifactProbe, latest_checkpoint
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.stages import make_context

from .helpers import DATA, PRETRAIN, TOKENIZER, job_dict


def store_job(root: Path, steps: int = 100):
    body = job_dict(DATA, TOKENIZER, {**PRETRAIN, "train": {"steps": steps}}, storage={"uri": f"file://{root}"})
    job = parse_job(body)
    return job, ArtifactStore.open(job.spec.storage.uri)


def commit_checkpoint(job, store, step: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        key = f"pretrain/checkpoints/{make_context(job, 'pretrain', store, Path(tmp)).fingerprint()}"
        (Path(tmp) / "train_state.json").write_text("{}")
        store.commit(f"{key}/step_{step:08d}/node_0", Path(tmp))
    store.write_json(f"{key}/latest", {"step": step, "nodes": 1})
    return f"{store.uri}/{key}/step_{step:08d}"


def test_no_checkpoint_yet(tmp_path):
    job, store = store_job(tmp_path)
    assert latest_checkpoint(store, job, "pretrain") is None


def test_the_latest_pointer_of_the_current_settings_is_the_checkpoint(tmp_path):
    job, store = store_job(tmp_path)
    commit_checkpoint(job, store, 100)
    uri = commit_checkpoint(job, store, 200)
    assert latest_checkpoint(store, job, "pretrain") == (uri, 200)


def test_checkpoints_of_other_settings_are_not_resumed_from(tmp_path):
    job, store = store_job(tmp_path, steps=100)
    commit_checkpoint(job, store, 50)
    changed, _ = store_job(tmp_path, steps=5000)  # a new fingerprint: the stage would start afresh
    assert latest_checkpoint(store, changed, "pretrain") is None


def test_probe_reports_checkpoints_and_versions(tmp_path):
    job, store = store_job(tmp_path)
    with store.writer("data") as out:
        (out / "corpus.txt").write_text("x")
    uri = commit_checkpoint(job, store, 300)
    found = ArtifactProbe().probe(job, ["pretrain"], ["data"])
    assert (found["pretrain"].checkpoint, found["pretrain"].step) == (uri, 300)
    assert found["data"].version == store.manifest("data").version


def test_a_disabled_probe_reads_nothing(tmp_path):
    job, store = store_job(tmp_path)
    commit_checkpoint(job, store, 300)
    assert ArtifactProbe(enabled=False).probe(job, ["pretrain"], []) == {}


def test_an_unreadable_store_answers_nothing_and_is_left_alone_for_a_while(tmp_path):
    blocker = tmp_path / "store"
    blocker.write_text("a file where the store's folder should be")
    job, _ = store_job(blocker)
    probe = ArtifactProbe(backoff_s=3600)
    assert probe.probe(job, ["pretrain"], ["data"]) == {}
    blocker.unlink()
    store = ArtifactStore.open(job.spec.storage.uri)
    commit_checkpoint(job, store, 10)
    assert probe.probe(job, ["pretrain"], []) == {}  # still backing off
    assert ArtifactProbe(backoff_s=0).probe(job, ["pretrain"], [])["pretrain"].step == 10


def test_cleanup_deletes_only_the_jobs_own_stages(tmp_path):
    job, store = store_job(tmp_path)
    for key in ("data", "tok", "unrelated"):
        with store.writer(key) as out:
            (out / "f").write_text(key)
    ArtifactProbe().delete_stage_artifacts(job)
    assert [store.exists(k) for k in ("data", "tok", "unrelated")] == [False, False, True]
