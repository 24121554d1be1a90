"""The jobs API over HTTP (FastAPI's test client) with the embedded backend running real `llmp run` subprocesses."""

from __future__ import annotations

import importlib.util
import time

import pytest
from fastapi.testclient import TestClient

from llm_platform.services.jobs_api import create_app
from llm_platform.services.local_jobs import LocalJobs

JOB = {
    "apiVersion": "llmplatform.dev/v1alpha1",
    "kind": "LLMJob",
    "metadata": {"name": "api-demo"},
    "spec": {
        "stages": [{"name": "data", "kind": "data", "data": {"sources": [{"type": "stdlib", "include": "json/*.py"}]}}]
    },
}


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(LocalJobs(tmp_path / "jobs"))) as c:
        yield c


def test_submit_runs_the_job_and_reports_stage_status(client):
    created = client.post("/v1/jobs", json=JOB)
    assert created.status_code == 201, created.text
    deadline = time.monotonic() + 120
    while (body := client.get("/v1/jobs/api-demo").json())["status"]["phase"] == "Running":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert body["status"]["phase"] == "Succeeded", body
    assert body["status"]["stages"]["data"]["metrics"]["train_docs"] > 0
    assert [j["metadata"]["name"] for j in client.get("/v1/jobs").json()["items"]] == ["api-demo"]
    assert client.post("/v1/jobs", json=JOB).status_code == 409


def test_yaml_body_and_bad_spec_give_field_paths(client):
    bad = (
        "apiVersion: llmplatform.dev/v1alpha1\nkind: LLMJob\nmetadata: {name: x}\nspec:\n  stages:\n"
        "  - {name: data, kind: data, data: {sources: []}}\n"
    )
    response = client.post("/v1/jobs", content=bad, headers={"content-type": "application/yaml"})
    assert response.status_code == 422
    assert response.json()["problems"][0]["path"] == "spec.stages[0].data.sources"


def test_a_job_this_server_cannot_run_is_refused_before_it_starts(client, tmp_path):
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here, so this server can run the job")
    serve = {"name": "serve", "kind": "serve", "serve": {"engine": "vllm"}}
    job = {**JOB, "spec": {"model": {"from": "s3://models/base"}, "stages": [serve]}}
    response = client.post("/v1/jobs", json=job)
    assert response.status_code == 422, response.text
    (problem,) = response.json()["problems"]
    assert response.json()["error"] == "cannot run on this server"
    assert problem["message"].startswith("stage 'serve': serve.engine needs the 'vllm' package, which is not installed")
    assert not (tmp_path / "jobs" / "api-demo").exists()


def test_unknown_job_is_404(client):
    assert client.get("/v1/jobs/nope").status_code == 404
    assert client.delete("/v1/jobs/nope").status_code == 404
