"""Preflight of what a run reads: S3 source globs are listed (against moto's S3 server over HTTP) before any stage
starts, and a validation split already committed empty stops a run whose eval stage measures perplexity on it."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from llm_platform.api import load_job
from llm_platform.api.status import progress_key
from llm_platform.cli import app
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.data.dedup import is_validation
from llm_platform.trainer.data.sources import ScanLimit, SourceUnreadable, expand, iter_matches
from llm_platform.trainer.stages import inputs
from llm_platform.trainer.stages.inputs import committed_split_problems, input_problems

runner = CliRunner()

HEAD = "apiVersion: llmplatform.dev/v1alpha1\nkind: LLMJob\nmetadata: {name: tiny}\n"
HEAD += "spec:\n  model: {preset: llama-tiny}\n"
DATA = "  - {name: data, kind: data, data: {sources: [SOURCE], val_fraction: 0.2}}\n"
TOKENIZER = "  - {name: tokenizer, kind: tokenizer, needs: [data], tokenizer: {vocab_size: VOCAB}}\n"
PRETRAIN = "  - {name: pretrain, kind: pretrain, needs: [tokenizer], train: {steps: 2, seq_len: 32}}\n"
EVAL = "  - {name: eval, kind: eval, needs: [pretrain], eval: {metrics: [perplexity]}}\n"


def job_file(folder: Path, source: str, *stages: str, vocab: int = 384) -> Path:
    path = folder / "job.yaml"
    text = HEAD + "  stages:\n" + "".join(stages)
    path.write_text(text.replace("SOURCE", source).replace("VOCAB", str(vocab)))
    return path


def one_line(result) -> str:
    """The command failed with exit code 2 and printed one line, and no stage started."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "▶" not in result.stdout
    return lines[0]


# -- S3 source globs ---------------------------------------------------------------------------------------------


@pytest.fixture
def corpus_bucket(s3_bucket):
    client = boto3.client("s3")
    for part in range(2):
        body = json.dumps({"text": f"part {part} of a corpus on S3, long enough to be kept by cleaning"})
        client.put_object(Bucket=s3_bucket, Key=f"corpus/part-{part}.jsonl", Body=body.encode())
    return s3_bucket


def test_an_s3_glob_with_a_match_passes_and_one_without_is_refused_naming_the_field(corpus_bucket, tmp_path):
    matching = f"s3://{corpus_bucket}/corpus/part-?.jsonl"
    path = job_file(tmp_path, f"{{type: jsonl, path: '{matching}'}}", DATA)
    assert input_problems(load_job(path), ["data"], None) == []
    parts = [f"s3://{corpus_bucket}/corpus/part-{n}.jsonl" for n in range(2)]
    assert expand(matching) == parts  # what the data stage reads: the same matcher, sorted

    missing = f"s3://{corpus_bucket}/corpus/*.parquet"
    path = job_file(tmp_path, f"{{type: parquet, path: '{missing}'}}", DATA)
    (problem,) = input_problems(load_job(path), ["data"], None)
    assert problem.path == "spec.stages[0].data.sources[0].path"
    assert problem.message == f"'{missing}' matches no object in bucket '{corpus_bucket}'"
    assert "fix the prefix or the pattern" in problem.hint

    result = runner.invoke(app, ["run", str(path), "--workdir", str(tmp_path / "w")])
    line = one_line(result)
    assert line.startswith(f"{path}: spec.stages[0].data.sources[0].path: '{missing}' matches no object")
    assert not (tmp_path / "w").exists()


def test_a_missing_bucket_is_refused_before_any_stage(s3_env, tmp_path):
    path = job_file(tmp_path, "{type: jsonl, path: 's3://no-such-bucket-here/corpus/*.jsonl'}", DATA)
    result = runner.invoke(app, ["run", str(path), "--workdir", str(tmp_path / "w")])
    line = one_line(result)
    assert "spec.stages[0].data.sources[0].path: bucket 'no-such-bucket-here' does not exist" in line
    assert line.endswith("fix the bucket name, or create it")
    assert not (tmp_path / "w").exists()
    with pytest.raises(SourceUnreadable, match="bucket 'no-such-bucket-here' does not exist; fix the bucket name"):
        expand("s3://no-such-bucket-here/corpus/*.jsonl")  # the data stage says the same, should it get that far


def test_a_dead_or_hung_endpoint_is_a_problem_not_a_traceback(s3_env, monkeypatch, tmp_path):
    import socket
    import time

    path = job_file(tmp_path, "{type: jsonl, path: 's3://bucket/corpus/*.jsonl'}", DATA)
    monkeypatch.setattr(
        inputs, "S3_PATIENCE", {"connect_timeout": 1, "read_timeout": 1, "retries": {"total_max_attempts": 1}}
    )
    with socket.socket() as closed, socket.socket() as silent:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: the connection is refused at once
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)  # accepts the connection (kernel backlog) and never answers
        for sock, cause in (
            (closed, "Could not connect to the endpoint URL"),
            (silent, "Read timeout on endpoint URL"),
        ):
            monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{sock.getsockname()[1]}")
            started = time.monotonic()
            (problem,) = input_problems(load_job(path), ["data"], None)
            assert time.monotonic() - started < 10
            assert problem.path == "spec.stages[0].data.sources[0].path"
            assert problem.message.startswith(f"cannot list s3://bucket/corpus/: {cause}"), problem.message
            assert "AWS_ENDPOINT_URL" in problem.hint


def test_the_listing_stops_at_the_first_match_and_at_the_scan_limit(corpus_bucket, monkeypatch, tmp_path):
    """Preflight reads the data stage's own matcher (one function): a match ends the listing; past the limit the
    answer is left undecided (not refused), since a later key may match."""
    client = boto3.client("s3")
    for name in ("a", "b", "c"):
        client.put_object(Bucket=corpus_bucket, Key=f"corpus/notes-{name}.txt", Body=b"x")
    first = next(iter_matches(f"s3://{corpus_bucket}/corpus/*", scan_limit=1))
    assert first == f"s3://{corpus_bucket}/corpus/notes-a.txt"  # S3 lists keys in order: the first one matched
    with pytest.raises(ScanLimit):
        next(iter_matches(f"s3://{corpus_bucket}/corpus/*.parquet", scan_limit=3))
    assert list(iter_matches(f"s3://{corpus_bucket}/corpus/*.parquet", scan_limit=5)) == []
    path = job_file(tmp_path, f"{{type: parquet, path: 's3://{corpus_bucket}/corpus/*.parquet'}}", DATA)
    monkeypatch.setattr(inputs, "S3_SCAN_LIMIT", 3)
    assert input_problems(load_job(path), ["data"], None) == []
    monkeypatch.setattr(inputs, "S3_SCAN_LIMIT", 5)
    assert len(input_problems(load_job(path), ["data"], None)) == 1


# -- a validation split committed empty --------------------------------------------------------------------------


def training_only_documents(count: int, fraction: float) -> list[str]:
    """Distinct documents that the split's content hash all keeps out of the validation split."""
    texts = (f"document {n}: plain words about nothing in particular, long enough to pass cleaning" for n in range(99))
    chosen = [text for text in texts if not is_validation(text, fraction)][:count]
    assert len(chosen) == count
    return chosen


@pytest.fixture(scope="module")
def committed_without_val(tmp_path_factory):
    """A real `llmp run` of data and tokenizer over five documents, none of which the hash holds out (0.2 of five is
    one document by estimate, so no warning), leaving a workdir whose committed validation split is empty."""
    root = tmp_path_factory.mktemp("empty-val")
    corpus = root / "corpus"
    corpus.mkdir()
    for n, text in enumerate(training_only_documents(5, 0.2)):
        (corpus / f"{n}.txt").write_text(text)
    source = f"{{type: files, path: '{corpus}/*.txt'}}"
    path = job_file(root, source, DATA, TOKENIZER)
    result = runner.invoke(app, ["run", str(path), "--workdir", str(root / "w")])
    assert result.exit_code == 0, result.output
    store = ArtifactStore.open(str(root / "w"))
    assert store.manifest("data").meta["metrics"]["val_docs"] == 0
    assert store.manifest("tokenizer").meta["metrics"]["val_tokens"] == 0
    return root, source, store


def test_a_restart_adding_eval_on_an_empty_committed_split_is_refused_before_pretraining(committed_without_val):
    root, source, store = committed_without_val
    versions = {stage: store.manifest(stage).version for stage in ("data", "tokenizer")}
    path = job_file(root, source, DATA, TOKENIZER, PRETRAIN, EVAL)
    result = runner.invoke(app, ["run", str(path), "--workdir", str(root / "w")])
    line = one_line(result)  # no estimate warning either: by estimate one of five documents is held out
    assert line == (
        f"{path}: spec.stages[0].data.val_fraction: the validation split is empty (stage 'tokenizer' committed 0 val "
        "tokens at val_fraction 0.2), and eval measures perplexity on it; raise val_fraction (stage 'data' then runs "
        "again), or add documents and run with --from data; or drop perplexity from spec.stages[3].eval.metrics"
    )
    for stage in ("pretrain", "eval"):  # not started: no commit, no live status
        assert store.manifest(stage) is None and store.read_json(progress_key(stage)) is None
    assert {stage: store.manifest(stage).version for stage in ("data", "tokenizer")} == versions


def test_a_tokenizer_run_again_over_a_committed_corpus_without_val_documents_is_refused(committed_without_val):
    root, source, store = committed_without_val
    path = job_file(root, source, DATA, TOKENIZER, PRETRAIN, EVAL, vocab=400)  # the tokenizer stage is stale
    line = one_line(runner.invoke(app, ["run", str(path), "--workdir", str(root / "w")]))
    assert "spec.stages[0].data.val_fraction: the validation split is empty (stage 'data' committed 0 val " in line
    assert "which stage 'tokenizer' tokenizes" in line
    assert store.manifest("tokenizer").meta["metrics"]["vocab_size"] == 384  # not re-run


def test_what_runs_again_or_does_not_measure_perplexity_is_not_refused(committed_without_val):
    """A re-run data stage draws a new split (its estimate is the warning); pretraining on an empty split runs, and
    only leaves val_loss out."""
    root, source, store = committed_without_val
    job = load_job(job_file(root, source, DATA, TOKENIZER, PRETRAIN, EVAL).read_text())
    assert committed_split_problems(job, ["data", "tokenizer", "pretrain", "eval"], store) == []
    assert committed_split_problems(job, ["pretrain"], store) == []
    assert len(committed_split_problems(job, ["eval"], store)) == 1  # `--only eval`: what it reads is committed


def test_credentials_that_may_not_list_the_bucket_are_named(corpus_bucket, monkeypatch, tmp_path):
    """moto's server checks IAM when asked to: a user with no policy is denied the listing."""
    from moto.core.authorization import enable_iam_authentication

    iam = boto3.client("iam")
    user = f"reader-{corpus_bucket}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # its cached credentials are the fixture's
    path = job_file(tmp_path, f"{{type: jsonl, path: 's3://{corpus_bucket}/corpus/*.jsonl'}}", DATA)
    with enable_iam_authentication():
        (problem,) = input_problems(load_job(path), ["data"], None)
    assert problem.path == "spec.stages[0].data.sources[0].path"
    assert problem.message == f"S3 refused to list s3://{corpus_bucket}/corpus/ with these credentials (AccessDenied)"
    assert problem.hint == f"use credentials that may list '{corpus_bucket}' (s3:ListBucket)"


def test_the_split_estimate_reads_no_file_outside_the_folders_jobs_may_read(monkeypatch, tmp_path):
    """A source outside LLMP_READ_ROOTS is input_problems' to name; the estimate neither reads nor counts it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "one.jsonl").write_text('{"text": "one document"}\n')  # 0.2 of one document rounds to none
    job = load_job(job_file(tmp_path, f"{{type: jsonl, path: '{outside}/*.jsonl'}}", DATA, TOKENIZER, PRETRAIN, EVAL))
    assert [w.loc for w in inputs.split_warnings(job)] == [("spec", "stages", 0, "data", "val_fraction")]
    monkeypatch.setenv("LLMP_READ_ROOTS", str(tmp_path / "allowed"))
    assert inputs.split_warnings(job) == []
    (problem,) = [p for p in input_problems(job, ["data"], None) if p.loc[:4] == ("spec", "stages", 0, "data")]
    assert "outside the folders jobs may read" in problem.message
