"""`llmp schema` (the LLMJob JSON Schema for editors) and `--storage` on `llmp render`: the quickstart rendered for a
cluster passes the upstream CRD schemas, like every other rendering."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from llm_platform.cli import app

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
runner = CliRunner()


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_fits_the_schema(validator, path):
    for document in yaml.safe_load_all(path.read_text()):
        assert [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)] == []


def test_a_bad_spec_does_not(validator):
    job = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    job["spec"]["stages"][2]["train"]["learning_rate"] = 0.1  # the field is `lr`
    job["spec"]["stages"][0]["kind"] = "dta"
    job["spec"]["stages"][1]["tokenizer"]["vocab_size"] = "large"
    paths = sorted(tuple(e.absolute_path) for e in validator.iter_errors(job))
    assert paths, "a bad spec passed the schema"
    flagged = {p[:4] for p in paths}
    assert ("spec", "stages", 2, "train") in flagged  # the unknown field, reported on its object
    assert ("spec", "stages", 1, "tokenizer") in flagged
    assert any(p[:3] == ("spec", "stages", 0) for p in paths)


def test_the_quickstart_renders_for_a_cluster_with_storage(tmp_path):
    from tests.operator.schemas import schema_errors  # skips without ../shared/schemas

    plain = runner.invoke(app, ["render", str(REPO / "examples" / "quickstart.yaml")])
    assert plain.exit_code == 2 and "spec.storage.uri" in plain.output  # a cluster needs storage every pod reaches
    result = runner.invoke(app, ["render", str(REPO / "examples" / "quickstart.yaml"), "--storage", "s3://bucket/qs"])
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    assert {d["kind"] for d in docs} >= {"ConfigMap", "PyTorchJob", "Deployment"}
    assert [e for d in docs for e in schema_errors(d)] == []
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    assert "s3://bucket/qs" in json.dumps(configmap)
