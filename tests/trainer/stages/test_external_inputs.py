"""Preflight of what a run reads from outside itself: the files, folders and objects that tuning, eval and data
stages name (`ReadPath` fields), built-in dataset names, and the model `spec.model.from` names. Each is checked
before the first stage starts, with real `llmp run` invocations, real files, and moto's S3 server over HTTP."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from llm_platform.api import load_job
from llm_platform.cli import app
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.stages.inputs import external_model, external_reads, input_problems

from .test_inputs import one_line

runner = CliRunner()

HEAD = "apiVersion: llmplatform.dev/v1alpha1\nkind: LLMJob\nmetadata: {name: tuned}\nspec:\n"
PRESET = "  model: {preset: llama-tiny}\n"
PIPELINE = (
    "  - {name: data, kind: data, data: {sources: [{type: stdlib, include: 'json/*.py'}]}}\n"
    "  - {name: tokenizer, kind: tokenizer, needs: [data], tokenizer: {vocab_size: 384}}\n"
    "  - {name: pretrain, kind: pretrain, needs: [tokenizer], train: {steps: 2, seq_len: 32}}\n"
)
FINETUNE = "  - {name: sft, kind: finetune, NEEDS finetune: {dataset: {path: 'DATASET'}}, train: {steps: 2}}\n"
EVAL = "  - {name: eval, kind: eval, needs: [sft], eval: {metrics: [], tasks: [mmlu], data_dir: 'DATA_DIR'}}\n"


def pipeline_job(folder: Path, dataset: str, *, data_dir: str | None = None) -> Path:
    """data -> tokenizer -> pretrain -> sft (-> eval): what finetuning and eval read is refused before data runs."""
    text = HEAD + PRESET + "  stages:\n" + PIPELINE + FINETUNE.replace("NEEDS", "needs: [pretrain],")
    if data_dir is not None:
        text += EVAL.replace("DATA_DIR", data_dir)
    path = folder / "job.yaml"
    path.write_text(text.replace("DATASET", dataset))
    return path


def from_job(folder: Path, uri: str) -> Path:
    """Fine-tuning a model from outside the job, then evaluating it (the eval stage's model is the sft stage's)."""
    text = HEAD + f"  model: {{from: '{uri}'}}\n  stages:\n" + FINETUNE.replace("NEEDS", "")
    text += "  - {name: eval, kind: eval, needs: [sft], eval: {metrics: [stdlib_functions]}}\n"
    path = folder / "from.yaml"
    path.write_text(text.replace("DATASET", "builtin:stdlib-functions"))
    return path


def refused(path: Path, workdir: Path) -> str:
    """The one line `llmp run` printed, having started nothing (no workdir either)."""
    line = one_line(runner.invoke(app, ["run", str(path), "--workdir", str(workdir)]))
    assert not workdir.exists()
    return line


# -- datasets and data folders -----------------------------------------------------------------------------------


def test_a_missing_finetune_dataset_is_refused_before_the_data_stage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = pipeline_job(tmp_path, "sft/train.jsonl")
    line = refused(path, tmp_path / "w")
    assert line == (
        f"{path}: spec.stages[3].finetune.dataset.path: 'sft/train.jsonl' matches no file (read from {tmp_path}); "
        "fix the path or glob; a relative path is read from the folder llmp runs in"
    )
    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / "train.jsonl").write_text('{"prompt": "2+2?", "response": "4"}\n')
    job = load_job(path)
    assert input_problems(job, [s.name for s in job.spec.stages], None) == []


def test_an_unknown_builtin_dataset_is_refused_with_the_names_there_are(tmp_path):
    line = refused(pipeline_job(tmp_path, "builtin:stdlib-funtions"), tmp_path / "w")
    assert "spec.stages[3].finetune.dataset.path: 'builtin:stdlib-funtions' is not a built-in dataset; known: " in line
    assert "builtin:stdlib-functions, builtin:safety-refusals" in line
    job = load_job(pipeline_job(tmp_path, "builtin:stdlib-functions"))
    names = [s.name for s in job.spec.stages]
    assert list(external_reads(job, names)) == []  # a built-in name is no file to look for
    assert input_problems(job, names, None) == []


def test_missing_s3_datasets_and_data_folders_are_refused_and_present_ones_pass(s3_bucket, tmp_path):
    client = boto3.client("s3")
    client.put_object(Bucket=s3_bucket, Key="sft/train-0.jsonl", Body=b'{"prompt": "a", "response": "b"}\n')
    client.put_object(Bucket=s3_bucket, Key="bench/mmlu/dev/anatomy_dev.csv", Body=b"q,a,b,c,d,A\n")
    client.put_object(Bucket=s3_bucket, Key="bench-old/readme.txt", Body=b"x")

    present = pipeline_job(tmp_path, f"s3://{s3_bucket}/sft/train-*.jsonl", data_dir=f"s3://{s3_bucket}/bench")
    job = load_job(present)
    assert input_problems(job, [s.name for s in job.spec.stages], None) == []

    path = pipeline_job(tmp_path, f"s3://{s3_bucket}/sft/valid-*.jsonl", data_dir=f"s3://{s3_bucket}/bench")
    assert refused(path, tmp_path / "w") == (
        f"{path}: spec.stages[3].finetune.dataset.path: 's3://{s3_bucket}/sft/valid-*.jsonl' matches no object in "
        f"bucket '{s3_bucket}'; fix the prefix or the pattern (`*` also matches '/' in a key), or upload the files "
        "first"
    )
    job = load_job(
        pipeline_job(tmp_path, f"s3://{s3_bucket}/sft/valid-*.jsonl", data_dir=f"s3://{s3_bucket}/bench-new/")
    )
    dataset, data_dir = input_problems(job, [s.name for s in job.spec.stages], None)
    assert dataset.message == f"'s3://{s3_bucket}/sft/valid-*.jsonl' matches no object in bucket '{s3_bucket}'"
    assert data_dir.path == "spec.stages[4].eval.data_dir"
    assert data_dir.message == f"'s3://{s3_bucket}/bench-new/' does not exist in bucket '{s3_bucket}'"
    assert data_dir.hint == "fix the path, or create or upload it first"

    # a folder is a prefix followed by '/': bench-old does not make s3://bucket/bench exist, nor bench make bench-
    only = pipeline_job(tmp_path, "builtin:stdlib-functions", data_dir=f"s3://{s3_bucket}/bench-")
    assert [p.path for p in input_problems(load_job(only), ["eval"], None)] == ["spec.stages[4].eval.data_dir"]


def test_models_and_word_lists_a_data_stage_reads_are_looked_for(tmp_path, model_folder):
    """Filter models, word lists, the reward model and the built-in engine's model folder: files or folders."""
    words = tmp_path / "words.txt"
    words.write_text("badword\n")
    data = (
        "{sources: [{type: stdlib, include: 'json/*.py'}], "
        f"filters: [{{toxicity: {{word_list: '{words}'}}}}, {{classifier: {{model: '{tmp_path}/hq.npz'}}}}], "
        f"synthetic: {{endpoint: 'engine:{model_folder}', judge_endpoint: 'engine:{tmp_path}/judge', model: m, "
        f"topics: [t], reward_filter: {{model: '{tmp_path}/reward/model', min_reward: 0}}}}}}"
    )
    path = tmp_path / "data.yaml"
    path.write_text(HEAD + PRESET + f"  stages:\n  - {{name: data, kind: data, data: {data}}}\n")
    problems = {p.path: p.message for p in input_problems(load_job(path), ["data"], None)}
    assert problems == {
        "spec.stages[0].data.filters[1].classifier.model": f"'{tmp_path}/hq.npz' does not exist",
        "spec.stages[0].data.synthetic.reward_filter.model": f"'{tmp_path}/reward/model' does not exist",
        "spec.stages[0].data.synthetic.judge_endpoint": f"'{tmp_path}/judge' does not exist",
    }


def test_only_the_stages_about_to_run_are_checked(tmp_path):
    path = pipeline_job(tmp_path, "missing/*.jsonl", data_dir=str(tmp_path / "no-bench"))
    job = load_job(path)
    assert [p.path for p in input_problems(job, ["eval"], None)] == ["spec.stages[4].eval.data_dir"]
    assert input_problems(job, ["data", "tokenizer"], None) == []


# -- spec.model.from ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    """A Hugging Face-format folder (config.json, model.safetensors) of an untrained llama-tiny."""
    from llm_platform.trainer.model import Transformer, get_config
    from llm_platform.trainer.model.hf import save_pretrained

    folder = tmp_path_factory.mktemp("hf") / "model"
    save_pretrained(Transformer(get_config("llama-tiny")), folder)
    return folder


def test_a_model_folder_that_does_not_exist_is_refused_naming_spec_model_from(tmp_path, model_folder):
    missing = tmp_path / "models" / "llama-tiny"
    path = from_job(tmp_path, str(missing))
    assert refused(path, tmp_path / "w") == (
        f"{path}: spec.model.from: nothing at '{missing}' on this machine; fix the path, or run the stage of the job "
        "that writes it first (spec.model.from names a committed stage of another job (<storage>/<stage>) or a model "
        "folder)"
    )
    assert input_problems(load_job(from_job(tmp_path, str(model_folder))), ["sft", "eval"], None) == []
    assert input_problems(load_job(from_job(tmp_path, f"file://{model_folder}/")), ["sft"], None) == []


def test_a_folder_that_is_no_model_says_what_it_lacks(tmp_path, model_folder):
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "notes.txt").write_text("weights to follow")
    (problem,) = input_problems(load_job(from_job(tmp_path, str(folder))), ["sft"], None)
    assert problem.message == (
        f"'{folder}' is neither a committed stage (no manifest.json) nor a Hugging Face-format model (no config.json)"
    )
    (folder / "config.json").write_bytes((model_folder / "config.json").read_bytes())
    (problem,) = input_problems(load_job(from_job(tmp_path, str(folder))), ["sft"], None)
    assert problem.message == (
        f"'{folder}' holds config.json but no model.safetensors or model.safetensors.index.json (only safetensors "
        "weights load)"
    )


def test_a_stage_of_the_job_that_gives_the_model_is_not_checked(tmp_path):
    """Re-running only eval: its model is the sft stage's (committed), not spec.model.from."""
    job = load_job(from_job(tmp_path, str(tmp_path / "gone")))
    assert external_model(job, ["eval"]) is None and input_problems(job, ["eval"], None) == []
    assert external_model(job, ["sft", "eval"]) == str(tmp_path / "gone")


def test_an_s3_prefix_without_a_committed_stage_is_refused_and_a_committed_one_passes(
    s3_bucket, tmp_path, model_folder
):
    """Another job's stages, committed to moto's S3 through the store (manifest last), or only partly uploaded."""
    other = ArtifactStore.open(f"s3://{s3_bucket}/runs/other")
    outputs = tmp_path / "outputs"
    (outputs / "model").mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (outputs / "model" / name).write_bytes((model_folder / name).read_bytes())
    other.commit("sft", outputs)
    corpus = tmp_path / "corpus"
    (corpus / "corpus").mkdir(parents=True)
    (corpus / "corpus" / "train.jsonl").write_text('{"text": "x"}\n')
    other.commit("data", corpus)
    other.backend.put_bytes("dpo/versions/20261203T000000-0000/model/config.json", b"{}")  # no manifest yet

    committed = f"s3://{s3_bucket}/runs/other/sft"
    assert input_problems(load_job(from_job(tmp_path, committed)), ["sft", "eval"], None) == []

    uncommitted = f"s3://{s3_bucket}/runs/other/dpo"
    path = from_job(tmp_path, uncommitted)
    assert refused(path, tmp_path / "w") == (
        f"{path}: spec.model.from: '{uncommitted}' is neither a committed stage (no manifest.json) nor a Hugging "
        "Face-format model (no config.json); if it is another job's stage, run that stage until it commits; else "
        "name a folder holding config.json and model.safetensors"
    )
    problems = {
        uri: input_problems(load_job(from_job(tmp_path, uri)), ["sft"], None)
        for uri in (f"s3://{s3_bucket}/runs/other/data", f"s3://{s3_bucket}/runs/nothing/sft")
    }
    (data,), (nothing,) = problems.values()
    assert data.message == f"stage 'data' in s3://{s3_bucket}/runs/other is committed but holds no model/ folder"
    assert nothing.message == f"nothing at 's3://{s3_bucket}/runs/nothing/sft' in bucket '{s3_bucket}'"


def test_a_local_committed_stage_is_read_from_its_manifest(tmp_path, model_folder):
    """`<workdir>/<stage>` of another local run: its manifest lists model/config.json, or it has no model."""
    other = ArtifactStore.open(str(tmp_path / "runs" / "other"))
    outputs = tmp_path / "outputs"
    (outputs / "model").mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (outputs / "model" / name).write_bytes((model_folder / name).read_bytes())
    other.commit("sft", outputs)
    (outputs / "model" / "config.json").rename(outputs / "config.json")  # a tokenizer-like stage: no model/config.json
    other.commit("tokenizer", outputs)
    committed = tmp_path / "runs" / "other"
    assert input_problems(load_job(from_job(tmp_path, f"{committed}/sft")), ["sft"], None) == []
    (problem,) = input_problems(load_job(from_job(tmp_path, f"{committed}/tokenizer")), ["sft"], None)
    assert problem.message == f"stage 'tokenizer' in {committed} is committed but holds no model/ folder"
