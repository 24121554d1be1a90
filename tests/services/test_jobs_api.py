"""The jobs API over HTTP (real uvicorn on 127.0.0.1) with the embedded backend running real `llmp run` processes."""

from __future__ import annotations

import importlib.util

import pytest

from .server import job_body, wait_for

JOB = job_body("api-demo")


def test_submit_runs_the_job_and_reports_stage_status(api):
    created = api.client.post("/v1/jobs", json=JOB, headers=api.team)
    assert created.status_code == 201, created.text
    assert created.json()["metadata"]["namespace"] == "team"
    body = wait_for(
        lambda: (
            (b := api.client.get("/v1/jobs/api-demo", headers=api.team).json())["status"]["phase"]
            not in ("Pending", "Running")
            and b
        ),
        "the job to end",
        timeout=120,
    )
    assert body["status"]["phase"] == "Succeeded", body
    assert body["status"]["stages"]["data"]["metrics"]["train_docs"] > 0
    listed = api.client.get("/v1/jobs", headers=api.read_only).json()["items"]
    assert [j["metadata"]["name"] for j in listed] == ["api-demo"]
    assert api.client.post("/v1/jobs", json=JOB, headers=api.team).status_code == 409
    assert (api.jobs.root / "team" / "api-demo" / "job.yaml").is_file()


def test_yaml_body_and_bad_spec_give_field_paths_and_lines(api):
    bad = (
        "apiVersion: llmplatform.dev/v1alpha1\nkind: LLMJob\nmetadata: {name: x}\nspec:\n  stages:\n"
        "  - {name: data, kind: data, data: {sources: []}}\n"
    )
    response = api.client.post("/v1/jobs", content=bad, headers={"content-type": "application/yaml", **api.team})
    assert response.status_code == 422
    (problem,) = response.json()["problems"]
    assert problem["path"] == "spec.stages[0].data.sources" and problem["line"] == 6


def test_a_job_this_server_cannot_run_is_refused_before_it_starts(api):
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here, so this server can run the job")
    serve = {"name": "serve", "kind": "serve", "serve": {"engine": "vllm"}}
    job = job_body("api-demo", serve, model={"from": "s3://models/base"})
    response = api.client.post("/v1/jobs", json=job, headers=api.team)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "cannot run on this server"
    problems = {problem["path"]: problem for problem in response.json()["problems"]}
    problem = problems["spec.stages[0].serve.engine"]  # (and spec.model.from, on S3, when no credentials are set)
    assert problem["path"] == "spec.stages[0].serve.engine" and "'vllm' package" in problem["message"]
    assert not (api.jobs.root / "team" / "api-demo").exists()
    assert api.client.get("/v1/jobs", headers=api.team).json() == {"items": []}


def test_unknown_job_is_404_naming_what_to_do(api):
    response = api.client.get("/v1/jobs/nope", headers=api.team)
    assert response.status_code == 404
    assert response.json() == {"error": "no job named 'nope' in namespace 'team'; GET /v1/jobs lists them"}
    assert api.client.delete("/v1/jobs/nope", headers=api.team).status_code == 404
