"""The site's policy: local paths confined to allowed roots, credentials allow-listed and bound to endpoints.

The exfiltration test runs the real data stage against a real HTTP server on 127.0.0.1 that records every
Authorization header: the server's AWS_SECRET_ACCESS_KEY can no longer be sent to a host the spec chose."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from llm_platform.api import SpecError, parse_job
from llm_platform.api.policy import TRUSTED, Credential, SpecPolicy, endpoint_entry_problem, same_endpoint
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.data.synthetic import SyntheticConfig
from llm_platform.trainer.stages import run_stage
from llm_platform.trainer.stages.data import synthetic_api_key
from tests.trainer.data.test_synthetic import _Handler, endpoint  # noqa: F401 - the recording server fixture


def job(*stages: dict, **spec) -> dict:
    return {
        "apiVersion": "llmplatform.dev/v1alpha1",
        "kind": "LLMJob",
        "metadata": {"name": "policy-test"},
        "spec": {"stages": list(stages), **spec},
    }


def data_stage(**data) -> dict:
    return {"name": "data", "kind": "data", "data": {"sources": [{"type": "stdlib", "max_docs": 20}], **data}}


def refused(body: dict, policy: SpecPolicy) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_job(body, policy=policy)
    return {p.path: p.message for p in info.value.problems}


@pytest.fixture
def site(tmp_path):
    """A strict policy: jobs read under data/ and write under jobs/; outside/ holds what they must not reach."""
    for name in ("data", "jobs", "outside"):
        (tmp_path / name).mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("not yours")
    (tmp_path / "data" / "escape").symlink_to(tmp_path / "outside")
    return SpecPolicy.strict(read_roots=(tmp_path / "data",), write_roots=(tmp_path / "jobs",))


def _tuning(path: str) -> dict:
    return {"name": "sft", "kind": "finetune", "finetune": {"dataset": {"path": path}}}


@pytest.mark.parametrize(
    ("make", "path"),
    [
        (lambda t: job(data_stage(), storage={"uri": f"{t}/outside/run"}), "spec.storage.uri"),
        (lambda t: job(data_stage(), storage={"uri": f"file://{t}/data/run"}), "spec.storage.uri"),
        (lambda t: job(data_stage(), storage={"uri": "runs/x"}), "spec.storage.uri"),
        (lambda t: job(data_stage(sources=[{"type": "files", "path": f"{t}/outside/*.txt"}])),
         "spec.stages[0].data.sources[0].path"),
        (lambda t: job(data_stage(sources=[{"type": "files", "path": f"file://{t}/outside/secret.txt"}])),
         "spec.stages[0].data.sources[0].path"),
        (lambda t: job(data_stage(sources=[{"type": "files", "path": f"{t}/data/escape/secret.txt"}])),
         "spec.stages[0].data.sources[0].path"),
        (lambda t: job(data_stage(sources=[{"type": "files", "path": "~/notes.txt"}])),
         "spec.stages[0].data.sources[0].path"),
        (lambda t: job(data_stage(sources=[{"type": "hf", "path": f"{t}/outside"}])),
         "spec.stages[0].data.sources[0].path"),
        (lambda t: job(data_stage(filters=[{"perplexity": {"model": f"{t}/outside"}}])),
         "spec.stages[0].data.filters[0].perplexity.model"),
        (lambda t: job(_tuning(f"{t}/outside/sft.jsonl"), model={"from": f"{t}/data/m"}),
         "spec.stages[0].finetune.dataset.path"),
        (lambda t: job(_tuning(f"{t}/data/sft.jsonl"), model={"from": "/etc"}), "spec.model.from"),
        (lambda t: job(data_stage(), {"name": "tok", "kind": "tokenizer", "needs": ["data"],
                                      "tokenizer": {"from": f"{t}/outside/tok.json"}}),
         "spec.stages[1].tokenizer.from"),
        (lambda t: job(_tuning(f"{t}/data/sft.jsonl"), {"name": "ev", "kind": "eval", "needs": ["sft"],
                       "eval": {"metrics": [], "tasks": ["mmlu"], "data_dir": f"{t}/outside"}},
                       model={"from": f"{t}/data/m"}),
         "spec.stages[1].eval.data_dir"),
    ],
)  # fmt: skip
def test_strict_policy_confines_every_local_path(site, tmp_path, make, path):
    body = make(tmp_path)
    problems = refused(body, site)
    assert path in problems, problems
    parse_job(body)  # the local user's own machine: the same spec is theirs to run


@pytest.mark.parametrize(
    "make",
    [
        lambda t: job(
            data_stage(sources=[{"type": "files", "path": f"{t}/data/**/*.txt"}]), storage={"uri": f"{t}/jobs/a"}
        ),
        lambda t: job(data_stage(sources=[{"type": "jsonl", "path": "s3://raw-bucket/web/*.jsonl"}])),
        lambda t: job(data_stage(sources=[{"type": "hf", "path": "allenai/c4"}]), storage={"uri": "s3://bucket/x"}),
        lambda t: job(_tuning(f"file://{t}/data/sft.jsonl"), model={"from": "s3://models/base"}),
    ],
)
def test_strict_policy_accepts_paths_under_its_roots_and_object_storage(site, tmp_path, make):
    parse_job(make(tmp_path), policy=site)


SYNTH = {"model": "m", "topics": ["tides"], "per_topic": 1}


@pytest.mark.parametrize(
    ("synthetic", "path", "words"),
    [
        ({"endpoint": "http://127.0.0.1:9/v1", "credential": "aws"}, "credential", "not one this site allows"),
        ({"endpoint": "http://127.0.0.1:9/v1", "credential": "AWS_SECRET_ACCESS_KEY"}, "credential", "pattern"),
        ({"endpoint": "http://127.0.0.1:9/v1", "credential": "openai"}, "endpoint", "may only be sent to"),
        ({"endpoint": "https://api.openai.com/v1", "credential": "openai", "judge_endpoint": "https://evil.example/v1"},
         "judge_endpoint", "may only be sent to"),
        ({"endpoint": "https://api.openai.com.evil.example/v1", "credential": "openai"}, "endpoint", "may only"),
        ({"endpoint": "https://api.openai.com/v1", "api_key_env": "AWS_SECRET_ACCESS_KEY"}, "api_key_env", "unknown"),
    ],
)  # fmt: skip
def test_a_spec_cannot_point_a_credential_at_a_host_of_its_choosing(synthetic, path, words):
    problems = refused(job(data_stage(synthetic={**SYNTH, **synthetic})), TRUSTED)
    key = f"spec.stages[0].data.synthetic.{path}"
    assert key in problems and words in problems[key], problems


def test_an_allowed_credential_at_its_endpoint_passes():
    parse_job(job(data_stage(synthetic={**SYNTH, "endpoint": "https://api.openai.com/v1/", "credential": "openai"})))
    strict = SpecPolicy.strict()
    body = job(data_stage(synthetic={**SYNTH, "endpoint": "https://api.openai.com/v1", "credential": "openai"}))
    assert (
        "not one this site allows (allowed: none)" in refused(body, strict)["spec.stages[0].data.synthetic.credential"]
    )


def test_secrets_and_the_storage_endpoint_are_left_to_the_operators_one_allow_list():
    """The storage Secret and the S3 endpoint its credentials go to are checked together, by the operator's
    allow-list (tests/operator/test_policy.py, and the local jobs server against the same list:
    tests/services/test_local_lifecycle.py); the spec policy names neither, so there is no second list to keep equal
    (LLMP_STORAGE_ENDPOINTS, which only the jobs API read and the chart never set, is gone)."""
    body = job(data_stage(), storage={"uri": "s3://b-1/x", "secret_ref": "db-admin", "endpoint_url": "http://s3:9000"})
    assert parse_job(body, policy=SpecPolicy.strict()).spec.storage.endpoint_url == "http://s3:9000"


def test_endpoint_binding_is_by_origin_and_path_segment():
    assert same_endpoint("https://API.openai.com:443/v1/chat", "https://api.openai.com/v1")
    assert not same_endpoint("https://api.openai.com/v10", "https://api.openai.com/v1")
    assert not same_endpoint("http://api.openai.com/v1", "https://api.openai.com/v1")
    assert not same_endpoint("https://api.openai.com:8443/v1", "https://api.openai.com/v1")
    # S3 endpoints: the default port is the scheme's, and the host is the whole host, not a prefix or a suffix
    assert same_endpoint("http://MinIO.minio:80/", "http://minio.minio")
    assert not same_endpoint("http://minio.minio.attacker.example:9000", "http://minio.minio:9000")
    assert not same_endpoint("http://attacker.example/minio.minio:9000", "http://minio.minio:9000")


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("http://minio.minio:9000", None),
        ("https://s3.eu-west-1.amazonaws.com/", None),
        ("minio.minio:9000", "not an http(s) URL with a host"),
        ("s3://bucket", "not an http(s) URL with a host"),
        ("http://minio:99999", "not an http(s) URL with a host"),
        ("http://key:secret@minio:9000", "user, password"),
        ("http://minio:9000?x=1", "?query"),
    ],
)
def test_an_allow_list_entry_that_could_never_match_is_named(entry, why):
    problem = endpoint_entry_problem(entry)
    assert problem is None if why is None else why in problem


def test_policy_from_a_servers_environment(tmp_path):
    environ = {
        "LLMP_READ_ROOTS": f"{tmp_path}/a{os.pathsep}{tmp_path}/b",
        "LLMP_WRITE_ROOTS": f"{tmp_path}/jobs",
        "LLMP_CREDENTIALS": json.dumps({"synth": {"env": "SYNTH_KEY", "endpoints": ["http://127.0.0.1:8000/v1"]}}),
    }
    policy = SpecPolicy.from_env(environ)
    assert policy.read_roots == ((tmp_path / "a").resolve(), (tmp_path / "b").resolve())
    assert policy.credentials == {"synth": Credential("SYNTH_KEY", ("http://127.0.0.1:8000/v1",))}
    relaxed = SpecPolicy.from_env({}, strict=False)
    assert relaxed.read_roots is None and "openai" in relaxed.credentials


def test_the_servers_aws_secret_never_reaches_a_user_chosen_host(endpoint, tmp_path, monkeypatch):  # noqa: F811
    """The attack of issue 10, replayed against the real data stage and a recording HTTP server on loopback."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "server-aws-secret")
    monkeypatch.setenv("SYNTH_KEY", "synth-key-for-loopback")
    binding = {"synth": {"env": "SYNTH_KEY", "endpoints": [endpoint]}}
    monkeypatch.setenv("LLMP_CREDENTIALS", json.dumps(binding))
    store = ArtifactStore.open(str(tmp_path / "store"))
    site = SpecPolicy.from_env(os.environ)  # what a server or operator configured: only `synth`, only to `endpoint`

    # 1. the old way of naming the variable is gone, and credential names are not variable names
    for synthetic in ({"api_key_env": "AWS_SECRET_ACCESS_KEY"}, {"credential": "AWS_SECRET_ACCESS_KEY"}):
        with pytest.raises(SpecError):
            parse_job(job(data_stage(synthetic={**SYNTH, "endpoint": endpoint, **synthetic})), policy=site)
    # 2. without a credential the stage sends no key at all (it used to send OPENAI_API_KEY by default)
    run_stage(parse_job(job(data_stage(synthetic={**SYNTH, "endpoint": endpoint})), policy=site), "data", store)
    assert _Handler.calls and {c["auth"] for c in _Handler.calls} == {None}
    # 3. an allow-listed credential goes only to the endpoint it is bound to
    _Handler.calls.clear()
    body = job(data_stage(synthetic={**SYNTH, "endpoint": endpoint, "credential": "synth"}))
    run_stage(parse_job(body, policy=site), "data", store)
    assert {c["auth"] for c in _Handler.calls} == {"Bearer synth-key-for-loopback"}
    received = yaml.safe_dump(_Handler.calls)
    assert "server-aws-secret" not in received
    # 4. the stage checks the binding again, whatever reached it
    elsewhere = SyntheticConfig(endpoint="http://127.0.0.1:9/v1", model="m", topics=("t",), credential="synth")
    with pytest.raises(PermissionError, match="may not be sent to http://127.0.0.1:9/v1"):
        synthetic_api_key(elsewhere)
    with pytest.raises(PermissionError, match="not allowed"):
        synthetic_api_key(SyntheticConfig(endpoint=endpoint, model="m", topics=("t",), credential="aws"))


def test_readers_check_the_roots_again_when_they_open_files(tmp_path, monkeypatch):
    from llm_platform.trainer.eval.benchmark_files import HELLASWAG_FILE, benchmark_file
    from llm_platform.trainer.stages.context import fetch_uri

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "escape").symlink_to("/etc")
    monkeypatch.setenv("LLMP_READ_ROOTS", str(tmp_path / "data"))
    store = ArtifactStore.open(str(tmp_path / "store"))
    with pytest.raises(PermissionError, match="outside the folders jobs may read"):
        fetch_uri(f"{tmp_path}/data/escape", store)
    with pytest.raises(PermissionError, match="eval.data_dir"):
        benchmark_file(tmp_path / "data" / "escape", HELLASWAG_FILE)
    (tmp_path / "data" / "model").mkdir()
    assert fetch_uri(f"file://{tmp_path}/data/model", store) == tmp_path / "data" / "model"
