"""`eval.data_dir` on S3 (moto's real S3 server over HTTP): the files arrive in a local folder the tasks read."""

from __future__ import annotations

import boto3
import pytest

from llm_platform.trainer.eval.benchmark_files import HUMANEVAL_FILE, benchmark_file, read_humaneval
from llm_platform.trainer.eval.data_dir import local_data_dir
from tests.conftest import shared_path


def test_a_local_path_is_used_as_it_is():
    assert local_data_dir("/data/bench") == "/data/bench" and local_data_dir(None) is None


def test_an_s3_prefix_is_copied_to_the_cache(s3_bucket, tmp_path):
    source = shared_path("data", HUMANEVAL_FILE)
    client = boto3.client("s3")
    client.upload_file(str(source), s3_bucket, f"bench/{HUMANEVAL_FILE}")
    client.put_object(Bucket=s3_bucket, Key="benchmarks-other/x.txt", Body=b"not under bench/")
    folder = local_data_dir(f"s3://{s3_bucket}/bench", cache=tmp_path)
    assert len(read_humaneval(benchmark_file(folder, HUMANEVAL_FILE))) == 164
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["HumanEval.jsonl.gz"]


def test_an_empty_prefix_is_an_error(s3_bucket, tmp_path):
    with pytest.raises(ValueError, match="holds no files; upload the benchmark folders"):
        local_data_dir(f"s3://{s3_bucket}/nothing", cache=tmp_path)


def test_a_key_that_leaves_the_folder_is_refused(s3_bucket, tmp_path):
    boto3.client("s3").put_object(Bucket=s3_bucket, Key="bench/../../escape.txt", Body=b"x")
    with pytest.raises(ValueError, match="refusing the object key"):
        local_data_dir(f"s3://{s3_bucket}/bench", cache=tmp_path)
