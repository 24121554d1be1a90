"""What a newcomer sees when something is wrong: one line naming the field or file and what to do, exit code 2, and
nothing started (no stage folder written). The traceback comes only with --debug / LLMP_DEBUG=1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from llm_platform.cli import app
from llm_platform.storage import ArtifactStore

JOB = """\
apiVersion: llmplatform.dev/v1alpha1
kind: LLMJob
metadata: {name: tiny}
spec:
  STORAGE
  model: {preset: llama-tiny}
  stages:
  - {name: data, kind: data, data: {sources: [SOURCE], val_fraction: 0.2}}
  - {name: tokenizer, kind: tokenizer, needs: [data], tokenizer: {vocab_size: 384PATTERN}}
  - {name: pretrain, kind: pretrain, needs: [tokenizer], train: {steps: 2, seq_len: 32}}
  - {name: eval, kind: eval, needs: [pretrain], eval: {metrics: [perplexity]}}
"""

runner = CliRunner()


def job_file(tmp_path: Path, storage: str = "", source: str = "{type: stdlib, include: 'json/*.py'}", pattern=""):
    text = JOB.replace("STORAGE", f"storage: {{uri: '{storage}'}}" if storage else "")
    text = text.replace("SOURCE", source).replace("PATTERN", f", pattern: {pattern}" if pattern else "")
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def fails_in_one_line(result, *names: str) -> str:
    """The command failed with exit code 2 and printed exactly one line, naming each of `names`."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def no_aws(monkeypatch, tmp_path):
    """A machine with no S3 credentials anywhere botocore looks (environment, profile files; IMDS is off in tests)."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "LLMP_S3_SECRET_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))


def test_s3_storage_without_credentials_is_refused_before_any_stage(tmp_path, no_aws):
    path = job_file(tmp_path, storage="s3://bucket/tiny")
    result = runner.invoke(app, ["run", str(path)])
    line = fails_in_one_line(result, str(path), "spec.storage.uri", "s3://bucket/tiny", "AWS_ACCESS_KEY_ID")
    assert "credentials" in line
    assert "▶" not in result.stdout


def test_a_stage_pod_without_credentials_says_so_in_one_line(tmp_path, no_aws):
    path = job_file(tmp_path)
    result = runner.invoke(app, ["stage", "run", "--job", str(path), "--stage", "data", "--storage", "s3://b/x"])
    fails_in_one_line(result, "spec.storage.uri", "s3://b/x")


def test_workdir_with_storage_in_the_spec_is_refused_naming_both(tmp_path):
    store = tmp_path / "store"
    path = job_file(tmp_path, storage=f"file://{store}")
    result = runner.invoke(app, ["run", str(path), "--workdir", str(tmp_path / "w")])
    fails_in_one_line(result, "--workdir", "spec.storage.uri", "--storage")
    assert not store.exists() and not (tmp_path / "w").exists()


def test_storage_option_overrides_the_spec(tmp_path):
    path = job_file(tmp_path, storage="s3://bucket/tiny", source=f"{{type: files, path: '{tmp_path}/none/*.txt'}}")
    result = runner.invoke(app, ["run", str(path), "--storage", str(tmp_path / "here")])
    # refused for the glob, which shows that the S3 store (no credentials needed) was replaced by the folder
    fails_in_one_line(result, "spec.stages[0].data.sources[0].path")


def test_a_glob_that_matches_nothing_is_refused_before_any_stage(tmp_path):
    path = job_file(tmp_path, source=f"{{type: files, path: '{tmp_path}/corpus/*.txt'}}")
    result = runner.invoke(app, ["run", str(path), "--workdir", str(tmp_path / "w")])
    fails_in_one_line(result, "spec.stages[0].data.sources[0].path", "corpus/*.txt", "matches no file")
    assert not (tmp_path / "w" / "data").exists()


def test_an_unknown_tokenizer_pattern_is_refused_at_validate_time_listing_the_names(tmp_path):
    path = job_file(tmp_path, pattern="gpt-2")
    for command in (["validate", str(path)], ["run", str(path), "--workdir", str(tmp_path / "w")]):
        result = runner.invoke(app, command)
        line = fails_in_one_line(result, f"{path}:", "spec.stages[1].tokenizer.pattern", "'gpt-2'", "gpt2, gpt4")
        assert "regex:" in line
    assert not (tmp_path / "w").exists()


def test_status_and_render_of_an_invalid_job_file_are_one_line_too(tmp_path):
    path = job_file(tmp_path, pattern="gpt-2")
    for command in (["status", str(path)], ["render", str(path)]):
        fails_in_one_line(runner.invoke(app, command), f"{path}:", "spec.stages[1].tokenizer.pattern", "'gpt-2'")
    fails_in_one_line(runner.invoke(app, ["status", str(tmp_path / "[nope]")]), "[nope]", "s3://")


def test_a_regex_pattern_is_written_as_such_and_checked(tmp_path):
    assert runner.invoke(app, ["validate", str(job_file(tmp_path, pattern="'regex:\\p{L}+|\\s+'"))]).exit_code == 0
    fails_in_one_line(
        runner.invoke(app, ["validate", str(job_file(tmp_path, pattern="'regex:(unclosed'"))]),
        "spec.stages[1].tokenizer.pattern",
        "not a valid regex",
    )


def test_operator_without_a_cluster_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("kopf")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    fails_in_one_line(runner.invoke(app, ["operator"]), "kubeconfig", "--kubeconfig")
    fails_in_one_line(runner.invoke(app, ["operator", "--kubeconfig", str(tmp_path / "nope")]), "nope")


def test_a_bad_choice_names_the_option_and_the_choices(tmp_path):
    result = runner.invoke(app, ["model", "import", str(tmp_path), str(tmp_path / "out"), "--dtype", "bogus"])
    fails_in_one_line(result, "--dtype", "bogus", "fp32", "bf16")
    assert not (tmp_path / "out").exists()


def test_an_empty_validation_split_is_a_warning_at_validate_time(tmp_path):
    path = job_file(tmp_path, source="{type: stdlib, include: 'json/tool.py'}")  # one document, 0.2 of it is none
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    (warning,) = result.stderr.strip().splitlines()
    assert warning.startswith(f"warning: {path}: spec.stages[0].data.val_fraction:") and "eval" in warning
    assert runner.invoke(app, ["validate", str(job_file(tmp_path))]).stderr == ""  # json/*.py: enough documents


def test_eval_on_an_empty_validation_split_fails_in_one_line_before_loading_the_model(tmp_path):
    """The stages before it are committed as a run with `val_fraction` too small would leave them: an empty val.bin,
    and a model folder that is never read."""
    path = job_file(tmp_path)
    store = ArtifactStore.open(str(tmp_path / "store"))
    with store.writer("tokenizer") as out:
        (out / "tokens").mkdir()
        (out / "tokens" / "meta.json").write_text(json.dumps({"dtype": "uint16"}))
        np.arange(100, dtype=np.uint16).tofile(out / "tokens" / "train.bin")
        (out / "tokens" / "val.bin").write_bytes(b"")
    with store.writer("pretrain") as out:
        (out / "model").mkdir()
        (out / "model" / "config.json").write_text("{}")  # loading it would fail with another message
    result = runner.invoke(app, ["stage", "run", "--job", str(path), "--stage", "eval", "--storage", str(store.uri)])
    fails_in_one_line(result, "eval.metrics", "validation split of stage 'tokenizer'", "val_fraction")
    assert store.manifest("eval") is None


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    path = job_file(tmp_path, source=f"{{type: files, path: '{tmp_path}/corpus/*.txt'}}")
    monkeypatch.setenv("LLMP_DEBUG", "1")
    result = runner.invoke(app, ["run", str(path), "--workdir", str(tmp_path / "w")])
    assert type(result.exception).__name__ == "PreflightError"
    monkeypatch.setenv("LLMP_DEBUG", "")  # --debug sets it for the stage subprocesses; monkeypatch restores it after
    result = runner.invoke(app, ["--debug", "run", str(path), "--workdir", str(tmp_path / "w")])
    assert type(result.exception).__name__ == "PreflightError"


def test_piped_output_is_not_wrapped_at_80_columns(tmp_path):
    """Through a real pipe (not a terminal): a long message stays one line, however long."""
    path = job_file(tmp_path, source=f"{{type: files, path: '{tmp_path}/{'long-folder-name/' * 6}*.txt'}}")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run(
        [sys.executable, "-m", "llm_platform.cli", "run", str(path), "--workdir", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert len(line) > 160 and "long-folder-name/" * 6 in line


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("llmp ")
    from importlib.metadata import version

    assert result.stdout.split()[1] == version("llm-platform")


def test_a_run_with_storage_writes_there_and_not_to_the_spec_storage(tmp_path, no_aws):
    """End to end through the stage subprocess: the S3 store of the spec is never touched (no credentials here)."""
    path = tmp_path / "job.yaml"
    path.write_text(
        "apiVersion: llmplatform.dev/v1alpha1\nkind: LLMJob\nmetadata: {name: tiny}\nspec:\n"
        "  storage: {uri: 's3://bucket/tiny'}\n  stages:\n"
        "  - {name: data, kind: data, data: {sources: [{type: stdlib, include: 'json/*.py'}]}}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "llm_platform.cli", "run", str(path), "--storage", str(tmp_path / "here")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert ArtifactStore.open(str(tmp_path / "here")).manifest("data") is not None


def test_an_unexpected_error_is_one_line_with_exit_code_1_and_how_to_see_more(capsys):
    from llm_platform.cli_errors import report

    assert report(RuntimeError("the tensor was on the moon\nmore detail")) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "RuntimeError: the tensor was on the moon" in line and "--debug" in line and "LLMP_DEBUG=1" in line
    assert report(FileNotFoundError(2, "No such file or directory", "corpus.txt")) == 2
    assert capsys.readouterr().err.strip() == "corpus.txt: No such file or directory"


def test_the_command_group_loads_without_the_api_models_or_torch():
    """`llmp --help`, `llmp tokenizer ...`, `llmp serve ...` do not pay for the LLMJob models; commands import them."""
    code = "import sys, llm_platform.cli; print(sorted({'torch', 'pydantic', 'llm_platform.api'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
