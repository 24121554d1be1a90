"""Everything the operator creates, and the operator's own manifests, validate against the schemas the cluster
checks them with: the upstream Kubeflow / KubeRay / Prometheus-operator CRDs, and Kubernetes' own for built-ins."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

from llm_platform.api import parse_job
from llm_platform.operator.render import render_job

from .helpers import CLUSTER_EXAMPLES, REPO, example, rendering_variants
from .schemas import schema_errors

# PodMonitor has no upstream schema among ../shared's CRDs; tests/deploy/test_chart.py checks what it must match
MANIFESTS = [
    path
    for folder in ("operator", "monitoring", "api")
    for path in sorted((REPO / "manifests" / folder).glob("*.yaml"))
    if path.name != "podmonitor.yaml"
]


@pytest.mark.parametrize("path", CLUSTER_EXAMPLES, ids=lambda p: p.stem)
def test_every_rendered_object_of_the_examples_validates(path: Path):
    docs = render_job(example(path.name), owner_uid="9a8b7c6d-0000-0000-0000-000000000000")
    assert [e for d in docs for e in schema_errors(d)] == []


@pytest.mark.parametrize("name", list(rendering_variants()))
def test_every_rendering_variant_validates(name):
    docs = render_job(parse_job(rendering_variants()[name]), owner_uid="uid")
    assert [e for d in docs for e in schema_errors(d)] == []


def test_the_validators_do_reject_a_broken_child():
    # guards against a validator that accepts anything (e.g. a schema that failed to load)
    docs = render_job(example("pretrain.yaml"))
    pytorchjob = copy.deepcopy(next(d for d in docs if d["kind"] == "PyTorchJob"))
    pytorchjob["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = "one"
    rayjob = copy.deepcopy(next(d for d in docs if d["kind"] == "RayJob"))
    rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].pop("groupName")
    configmap = copy.deepcopy(docs[0])
    configmap["data"]["job.yaml"] = 1
    assert all(schema_errors(d) for d in (pytorchjob, rayjob, configmap))


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_operator_manifests_validate(path: Path):
    crds = {
        (f"{d['spec']['group']}/{v['name']}", d["spec"]["names"]["kind"]): v["schema"]["openAPIV3Schema"]
        for crd_file in (REPO / "manifests" / "crds").glob("*.yaml")
        for d in [yaml.safe_load(crd_file.read_text())]
        for v in d["spec"]["versions"]
    }
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert [e for d in docs for e in schema_errors(d, crds)] == []


def test_the_status_the_operator_writes_fits_the_llmjob_crd():
    # the API server prunes fields the CRD's status schema does not declare: nothing we write may be lost
    from llm_platform.api.crd import crd
    from llm_platform.operator.children import ChildState
    from llm_platform.operator.plan import Observed, StageArtifacts, plan

    job = example("pretrain.yaml")
    observed = Observed(
        children={"data": ChildState("RayJob", "llama-125m-data", 1, "Running", started="2025-01-01T00:00:00Z")},
        artifacts={"data": StageArtifacts(checkpoint="s3://b/p/data/checkpoints/x/step_00000001", step=1)},
        now="2025-01-01T00:00:01Z",
        generation=3,
    )
    # as stored: the status patch sets unset fields to null, which a merge patch turns into "absent"
    status = plan(job, None, observed).status.model_dump(mode="json", by_alias=True, exclude_none=True)
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert [e.message for e in jsonschema.Draft4Validator(schema).iter_errors(status)] == []
    declared = schema["properties"]
    assert set(status) <= set(declared)
    assert set(status["stages"]["data"]) <= set(declared["stages"]["additionalProperties"]["properties"])
