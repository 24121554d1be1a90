"""`spec.model.from` naming another job's committed stage (`<storage>/<stage>`, what every stage writes) reads that
stage's verified `model/`, locally and on S3 (moto over HTTP); a plain Hugging Face folder is read as before."""

from __future__ import annotations

import pytest

from llm_platform.storage import ArtifactStore
from llm_platform.trainer.stages.context import fetch_uri


def commit_sft(uri: str) -> None:
    with ArtifactStore.open(uri).writer("sft") as out:
        (out / "model").mkdir()
        (out / "model" / "config.json").write_text('{"model_type": "llama"}')
        (out / "model" / "model.safetensors").write_bytes(b"weights")


def test_a_local_stage_folder_gives_its_committed_model(tmp_path):
    commit_sft(str(tmp_path / "other-job"))
    folder = fetch_uri(f"file://{tmp_path}/other-job/sft", ArtifactStore.open(str(tmp_path / "this-job")))
    assert (folder / "model.safetensors").read_bytes() == b"weights" and folder.name == "model"
    plain = tmp_path / "hf"
    plain.mkdir()
    assert fetch_uri(str(plain), ArtifactStore.open(str(tmp_path / "this-job"))) == plain


def test_a_stage_without_a_model_is_named(tmp_path):
    with ArtifactStore.open(str(tmp_path / "other")).writer("data") as out:
        (out / "corpus").mkdir()
    with pytest.raises(FileNotFoundError, match="stage 'data' .* committed no model/"):
        fetch_uri(f"{tmp_path}/other/data", ArtifactStore.open(str(tmp_path / "this")))


def test_an_s3_stage_folder_gives_its_committed_model(s3_bucket, tmp_path):
    commit_sft(f"s3://{s3_bucket}/research/support-sft")
    store = ArtifactStore.open(f"s3://{s3_bucket}/research/support-dpo")
    folder = fetch_uri(f"s3://{s3_bucket}/research/support-sft/sft", store)
    assert (folder / "model.safetensors").read_bytes() == b"weights"
