"""The vLLM init container copies the served model out of the store."""

from __future__ import annotations

import yaml

from llm_platform.operator.fetch_model import main
from llm_platform.storage import ArtifactStore

from .helpers import DATA, PRETRAIN, SERVE, TOKENIZER, job_dict


def write_job(tmp_path, body):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_the_model_of_the_stage_before_serve_is_copied(tmp_path):
    store = ArtifactStore.open(f"file://{tmp_path / 'store'}")
    with store.writer("pretrain") as out:
        (out / "model").mkdir()
        (out / "model" / "config.json").write_text('{"model_type": "llama"}')
    job = write_job(tmp_path, job_dict(DATA, TOKENIZER, PRETRAIN, {**SERVE, "serve": {"engine": "vllm"}}))
    dest = tmp_path / "models" / "model"
    assert main(["--job", str(job), "--stage", "serve", "--storage", store.uri, "--dest", str(dest)]) == 0
    assert (dest / "config.json").read_text() == '{"model_type": "llama"}'


def test_a_model_given_by_spec_model_from_is_copied(tmp_path):
    source = tmp_path / "hf-model"
    source.mkdir()
    (source / "model.safetensors").write_bytes(b"weights")
    job = write_job(tmp_path, job_dict({**SERVE, "needs": []}, model={"from": str(source)}))
    dest = tmp_path / "dest"
    assert main(["--job", str(job), "--stage", "serve", "--storage", str(tmp_path / "store"), "--dest", str(dest)]) == 0
    assert (dest / "model.safetensors").read_bytes() == b"weights"


def test_a_model_not_yet_committed_is_a_clear_error(tmp_path, capsys):
    job = write_job(tmp_path, job_dict(DATA, TOKENIZER, PRETRAIN, SERVE))
    assert (
        main(["--job", str(job), "--stage", "serve", "--storage", str(tmp_path / "s"), "--dest", str(tmp_path / "d")])
        == 2
    )
    assert "no committed artifact 'pretrain'" in capsys.readouterr().err


def test_a_corrupt_model_is_refused_naming_the_file(tmp_path, capsys):
    store = ArtifactStore.open(f"file://{tmp_path / 'store'}")
    with store.writer("pretrain") as out:
        (out / "model").mkdir()
        (out / "model" / "model.safetensors").write_bytes(b"\x00" * 64)
    manifest = store.manifest("pretrain")
    store.backend.put_bytes(f"pretrain/versions/{manifest.version}/model/model.safetensors", b"\xff" * 64)
    job = write_job(tmp_path, job_dict(DATA, TOKENIZER, PRETRAIN, {**SERVE, "serve": {"engine": "vllm"}}))
    dest = tmp_path / "models" / "model"
    assert main(["--job", str(job), "--stage", "serve", "--storage", store.uri, "--dest", str(dest)]) == 2
    assert "file 'model/model.safetensors' should have sha256" in capsys.readouterr().err
    assert not dest.exists()


def test_a_partial_copy_left_by_a_killed_init_container_is_replaced_whole(tmp_path):
    source = tmp_path / "hf-model"
    source.mkdir()
    (source / "model.safetensors").write_bytes(b"weights")
    dest = tmp_path / "models" / "model"
    dest.mkdir(parents=True)
    (dest / "model-00002-of-00002.safetensors").write_bytes(b"half")  # from an earlier, interrupted attempt
    job = write_job(tmp_path, job_dict({**SERVE, "needs": []}, model={"from": str(source)}))
    assert main(["--job", str(job), "--stage", "serve", "--storage", str(tmp_path / "store"), "--dest", str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["model.safetensors"]
    assert not (tmp_path / "models" / ".model.partial").exists()
