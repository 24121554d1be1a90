"""Every pod the operator renders meets Pod Security "restricted" and our hardening, and every object validates;
the storage Secret reaches only containers that use storage."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from llm_platform.api import parse_job
from llm_platform.operator.render import render_job

from .helpers import CLUSTER_EXAMPLES, DATA, PRETRAIN, SERVE, TOKENIZER, example, job, rendering_variants
from .pod_security import hardening_violations, pod_templates, restricted_violations
from .schemas import schema_errors

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.yaml"))


def pod_problems(docs: list[dict]) -> list[str]:
    templates = {where: t for d in docs for where, t in pod_templates(d).items()}
    assert templates, "no pods rendered"
    return [
        p for where, t in templates.items() for p in restricted_violations(t, where) + hardening_violations(t, where)
    ]


@pytest.mark.parametrize("path", CLUSTER_EXAMPLES, ids=lambda p: p.stem)
def test_every_pod_of_every_example_is_restricted_and_hardened(path: Path):
    assert pod_problems(render_job(example(path.name))) == []


@pytest.mark.parametrize("name", list(rendering_variants()))
def test_every_pod_of_every_rendering_variant_is_restricted_and_hardened(name):
    assert pod_problems(render_job(parse_job(rendering_variants()[name]))) == []


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_every_golden_file_is_restricted_hardened_and_valid(path: Path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert pod_problems(docs) == []
    assert [e for d in docs for e in schema_errors(d)] == []


def test_every_pod_runs_as_the_jobs_own_service_account():
    docs = render_job(example("pipeline.yaml"))
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert account["automountServiceAccountToken"] is False
    names = {t["spec"]["serviceAccountName"] for d in docs for t in pod_templates(d).values()}
    assert names == {account["metadata"]["name"]}


BROKEN = {
    "host network": (lambda pod: pod.update(hostNetwork=True), "hostNetwork is set"),
    "hostPath": (lambda pod: pod["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath"),
    "privileged": (lambda pod: pod["containers"][0]["securityContext"].update(privileged=True), "privileged"),
    "escalation": (
        lambda pod: pod["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
        "allowPrivilegeEscalation is not false",
    ),
    "root": (lambda pod: pod["securityContext"].update(runAsUser=0), "runAsUser is 0"),
    "root allowed": (lambda pod: pod["securityContext"].pop("runAsNonRoot"), "runAsNonRoot is not true"),
    "capabilities": (
        lambda pod: pod["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
        "adds capabilities other than NET_BIND_SERVICE",
    ),
    "no drop": (
        lambda pod: pod["containers"][0]["securityContext"].pop("capabilities"),
        "does not drop ALL capabilities",
    ),
    "no seccomp": (lambda pod: pod["securityContext"].pop("seccompProfile"), "no RuntimeDefault or Localhost"),
    "host port": (lambda pod: pod["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 80}]), "hostPort"),
    "sysctl": (
        lambda pod: pod["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
        "not in the safe set",
    ),
    "init container": (
        lambda pod: pod.setdefault("initContainers", []).append({"name": "wait", "image": "busybox"}),
        "container wait: does not drop ALL capabilities",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_the_checker_catches_each_broken_control(case):
    # guards against a checker that passes everything
    template = copy.deepcopy(render_job(job(DATA))[2]["spec"]["template"])
    break_it, expected = BROKEN[case]
    break_it(template["spec"])
    problems = restricted_violations(template)
    assert any(expected in p for p in problems), problems


def test_the_hardening_checker_catches_a_writable_root_a_token_and_missing_limits():
    template = copy.deepcopy(render_job(job(DATA))[2]["spec"]["template"])
    pod = template["spec"]
    pod["automountServiceAccountToken"] = True
    pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    del pod["containers"][0]["resources"]["limits"]["cpu"]
    problems = hardening_violations(template)
    assert len(problems) == 3, problems


def _containers(docs: list[dict]) -> dict[str, dict]:
    return {
        c["name"]: c
        for d in docs
        for t in pod_templates(d).values()
        for c in [*t["spec"].get("initContainers", []), *t["spec"]["containers"]]
    }


def test_the_storage_secret_reaches_only_containers_that_use_storage():
    vllm = render_job(example("serve-vllm.yaml"))
    containers = _containers(vllm)
    assert containers["fetch-model"]["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    assert "envFrom" not in containers["server"]  # vLLM serves the copied model
    ray = _containers(render_job(example("pretrain-ray.yaml")))
    assert ray["ray-head"]["envFrom"] == ray["ray-worker"]["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    assert "envFrom" not in ray["ray-job-submitter"]  # it only talks to the head's dashboard
    endpoint = _containers(render_job(example("tokenizer.yaml")))["stage"]["env"]
    assert {"name": "AWS_ENDPOINT_URL", "value": "http://minio.minio:9000"} in endpoint


def test_a_builtin_server_reads_the_store_itself_and_gets_the_secret():
    body = job(DATA, TOKENIZER, PRETRAIN, SERVE, storage={"uri": "s3://bucket/team/p", "secret_ref": "s3-credentials"})
    server = _containers(render_job(body, stage="serve"))["server"]
    assert server["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]


def test_resources_default_when_the_stage_names_none_and_follow_it_when_it_does():
    data = _containers(render_job(job(DATA)))["stage"]["resources"]
    assert data == {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"cpu": "2", "memory": "8Gi"}}
    sized = _containers(render_job(job({**DATA, "resources": {"cpu": "500m", "memory": "1Gi", "gpus": 1}})))
    assert sized["stage"]["resources"]["limits"] == {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "1"}


@pytest.mark.parametrize("path", CLUSTER_EXAMPLES, ids=lambda p: p.stem)
def test_every_container_can_write_its_home_and_tmp_on_a_read_only_root(path: Path):
    for name, c in _containers(render_job(example(path.name))).items():
        env = {e["name"]: e.get("value") for e in c["env"]}
        mounts = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
        assert {env["HOME"], "/tmp"} <= mounts, name
        assert env["USER"] == "llmp", name  # images without a passwd entry for the user (vLLM's) need it
