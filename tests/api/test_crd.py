"""The CRD is generated from the models: the committed file must match, be a valid CRD, and accept our examples."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from llm_platform.api import load_job
from llm_platform.api.crd import crd, crd_yaml

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "manifests" / "crds" / "llmplatform.dev_llmjobs.yaml"
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def test_committed_crd_matches_the_models():
    assert CRD_FILE.read_text() == crd_yaml(), "manifests/crds drifted from the API models: run `make crd`"


def test_crd_is_a_valid_kubernetes_object():
    kubernetes_validate.validate(crd(), "1.30", strict=True)


def test_crd_names_and_printer_columns():
    spec = crd()["spec"]
    assert spec["names"]["plural"] == "llmjobs" and spec["names"]["shortNames"] == ["llmj"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Phase", "Ready", "Stage", "Age", "Message"]
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Stage"] == ".status.currentStage"


def test_status_is_camel_case_with_conditions_keyed_by_type():
    status = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"currentStage", "observedGeneration"} <= status.keys() and "observed_generation" not in status
    conditions = status["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map" and conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["properties"]) == {
        "type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}  # fmt: skip


def _structural_problems(node: dict, path: str = "") -> list[str]:
    """Kubernetes structural-schema rules: every node typed (or explicitly open), no $ref, no type unions."""
    found = []
    if "$ref" in node or "anyOf" in node and any("type" in v for v in node["anyOf"]):
        found.append(path)
    if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        found.append(path)
    for name, sub in node.get("properties", {}).items():
        found += _structural_problems(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += _structural_problems(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += _structural_problems(node["additionalProperties"], f"{path}{{}}")
    return found


def test_schema_is_structural():
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _structural_problems(schema) == []


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
# OpenAPI 3.0 schemas follow JSON Schema draft 4 (boolean exclusiveMinimum), hence Draft4Validator.
def test_examples_validate_against_the_crd_schema(example):
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    load_job(example)  # valid for the models
    jsonschema.Draft4Validator(schema).validate(yaml.safe_load(example.read_text()))


def test_schema_rejects_what_the_models_reject():
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    job = yaml.safe_load(EXAMPLES[0].read_text())
    job["spec"]["stages"][0]["kind"] = "unknown-kind"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate(job)
