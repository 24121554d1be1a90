"""/openapi.json describes every body: each operation that takes one has a typed request body, and each answers 2xx
with a schema that has properties (or, for the log, text; for DELETE, no body at all). Checked on the document the
running server serves, with every `$ref` resolved."""

from __future__ import annotations

import pytest

from .server import job_body

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def document(api) -> dict:
    response = api.client.get("/openapi.json", headers=api.read_only)
    assert response.status_code == 200
    return response.json()


def resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def operations(document: dict) -> list[tuple[str, str, dict]]:
    return [(m, p, op) for p, item in document["paths"].items() for m, op in item.items() if m in METHODS]


def test_every_operation_has_typed_bodies(document):
    found = operations(document)
    assert len(found) == 11  # health, and list/get/submit/delete/logs under both route forms
    for method, path, operation in found:
        where = f"{method.upper()} {path}"
        if method in ("post", "put", "patch"):
            content = operation["requestBody"]["content"]
            assert resolve(document, content["application/json"]["schema"]).get("properties"), where
        else:
            assert "requestBody" not in operation, where
        ok = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
        assert len(ok) == 1, where
        ((code, response),) = ok.items()
        if code == "204":
            assert "content" not in response, where
        elif path.endswith("/logs"):
            assert response["content"]["text/plain"]["schema"]["type"] == "string", where
        else:
            schema = resolve(document, response["content"]["application/json"]["schema"])
            assert schema.get("properties"), (where, schema)
            assert all(p.get("type") or "$ref" in p or "anyOf" in p for p in schema["properties"].values()), where


def test_a_job_in_a_response_is_the_llmjob_with_its_camel_case_status(document):
    job = resolve(document, {"$ref": "#/components/schemas/JobObject"})
    assert set(job["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    status = resolve(document, {"$ref": "#/components/schemas/JobStatus"})
    assert {"phase", "currentStage", "stages", "conditions", "message", "observedGeneration"} == set(
        status["properties"]
    )
    stage = resolve(document, {"$ref": "#/components/schemas/StageStatus"})
    assert {"phase", "step", "message", "metrics", "version"} <= set(stage["properties"])


def test_every_refusal_is_documented_with_the_error_body(document):
    for method, path, operation in operations(document):
        if path == "/healthz":
            continue
        for code in ("401", "403", "404", "422"):
            schema = operation["responses"][code]["content"]["application/json"]["schema"]
            assert resolve(document, schema)["required"] == ["error"], (method, path, code)


def test_the_status_conditions_are_typed_as_kubernetes_conditions(document):
    status = resolve(document, {"$ref": "#/components/schemas/JobStatus"})
    items = resolve(document, status["properties"]["conditions"]["items"])
    assert set(items["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }
    assert set(items["required"]) == {"type", "status", "reason", "lastTransitionTime"}
    assert items["properties"]["status"]["enum"] == ["True", "False", "Unknown"]


def test_a_refusals_problems_have_only_documented_keys(api, document):
    storage = {"uri": "s3://bucket/team/x", "endpoint_url": "http://127.0.0.1:9"}  # refused (no endpoint allowed), hint
    response = api.client.post("/v1/jobs", json=job_body("refused", storage=storage), headers=api.team)
    assert response.status_code == 422, response.text
    schema = resolve(document, document["components"]["schemas"]["ErrorBody"])
    problem = resolve(document, schema["properties"]["problems"]["anyOf"][0]["items"])
    (body,) = response.json()["problems"]
    assert "hint" in body and set(body) <= set(problem["properties"]), (body, schema)
