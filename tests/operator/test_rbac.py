"""Least privilege, checked against behaviour: every API call the operator (kopf included) makes through a job's
whole life, webhook registration and deletion included, is allowed by manifests/operator/rbac.yaml."""

from __future__ import annotations

import socket

import yaml

from .cluster import wait_for
from .helpers import DATA, PRETRAIN, REPO, SERVE_VLLM, TOKENIZER, child, job_dict
from .rbac import VERBS, allowed


def cluster_role_rules() -> list[dict]:
    docs = yaml.safe_load_all((REPO / "manifests" / "operator" / "rbac.yaml").read_text())
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    return role["rules"]


def test_rules_with_resource_names_do_not_grant_create():
    # Kubernetes cannot restrict `create` by name: such a rule would silently allow nothing
    assert not [r for r in cluster_role_rules() if r.get("resourceNames") and "create" in r["verbs"]]


def test_every_api_call_of_a_job_lifecycle_is_allowed(cluster):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cluster.start_operator(webhook_port=port, webhook_insecure=True)
    cluster.apply(job_dict(DATA, TOKENIZER, PRETRAIN, SERVE_VLLM, **{"suspend": False}))
    for kind, name in (
        ("Job", child("demo", "data")),
        ("Job", child("demo", "tok")),
        ("PyTorchJob", child("demo", "pretrain")),
    ):
        wait_for(lambda kind=kind, name=name: cluster.child(kind, name), what=name)
        cluster.finish(kind, name, "Succeeded")
    wait_for(lambda: cluster.child("Deployment", child("demo", "serve")), what="the Deployment")
    cluster.patch_job("demo", {"spec": {"suspend": True}})
    wait_for(
        lambda: cluster.child("Deployment", child("demo", "serve"))["spec"]["replicas"] == 0, what="scaled to zero"
    )
    cluster.delete_job("demo")
    wait_for(lambda: cluster.job("demo") is None, what="deletion")
    wait_for(lambda: cluster.kube.get("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", None,
                                      "llmjobs.llmplatform.dev"), what="the webhook configuration")  # fmt: skip

    rules = cluster_role_rules()
    calls = set()
    for request in cluster.operator_requests():
        if request.resource is None or request.resource.plural is None or request.action is None:
            continue  # discovery (/api, /apis): allowed to every authenticated client
        resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        calls.add((request.resource.group, resource, VERBS[request.action.name], request.name))
    denied = sorted(c for c in calls if not allowed(rules, *c))
    assert denied == []
    used = {(g, r, v) for g, r, v, _ in calls}
    assert {("batch", "jobs", "create"), ("llmplatform.dev", "llmjobs/status", "patch"), ("", "events", "create"),
            ("apps", "deployments", "patch"), ("kubeflow.org", "pytorchjobs", "delete"),
            ("", "serviceaccounts", "create"), ("", "serviceaccounts", "delete"),
            ("admissionregistration.k8s.io", "validatingwebhookconfigurations", "patch")} <= used  # fmt: skip
