"""The API client edge, against the emulated API server."""

from __future__ import annotations

import pytest

from llm_platform.operator.kube import KindNotServed


def configmap(name, labels=None):
    meta = {"name": name, "namespace": "ns", "labels": labels or {}}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"a": "1"}}


def test_create_is_idempotent(cluster):
    assert cluster.kube.create(configmap("x")) is True
    assert cluster.kube.create(configmap("x")) is False
    assert cluster.kube.get("v1", "ConfigMap", "ns", "x")["data"] == {"a": "1"}


def test_get_patch_and_delete_of_a_missing_object_are_not_errors(cluster):
    assert cluster.kube.get("v1", "ConfigMap", "ns", "nope") is None
    assert cluster.kube.patch("v1", "ConfigMap", "ns", "nope", {"data": {}}) is None
    assert cluster.kube.delete("v1", "ConfigMap", "ns", "nope") is False


def test_list_filters_by_labels_and_fills_in_kind(cluster):
    cluster.kube.create(configmap("mine", {"llmplatform.dev/job": "a"}))
    cluster.kube.create(configmap("other", {"llmplatform.dev/job": "b"}))
    found = cluster.kube.list("v1", "ConfigMap", "ns", {"llmplatform.dev/job": "a"})
    assert [(o["kind"], o["metadata"]["name"]) for o in found] == [("ConfigMap", "mine")]


def test_merge_patch_removes_keys_set_to_none(cluster):
    cluster.kube.create(configmap("x"))
    patched = cluster.kube.patch("v1", "ConfigMap", "ns", "x", {"data": {"a": None, "b": "2"}})
    assert patched["data"] == {"b": "2"}


def test_status_goes_through_the_status_subresource(cluster):
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "ns"}, "spec": {}}
    cluster.kube.create(job)
    cluster.kube.patch("batch/v1", "Job", "ns", "j", {"status": {"active": 1}})  # ignored, as by an API server
    assert "status" not in cluster.kube.get("batch/v1", "Job", "ns", "j")
    cluster.kube.patch("batch/v1", "Job", "ns", "j", {"status": {"active": 1}}, "status")
    assert cluster.kube.get("batch/v1", "Job", "ns", "j")["status"] == {"active": 1}


def test_a_kind_the_cluster_does_not_serve_is_named_and_not_rediscovered_each_time(cluster):
    with pytest.raises(KindNotServed, match="does not serve example.com/v1 Widget"):
        cluster.kube.list("example.com/v1", "Widget", "ns")
    before = len(cluster.server.requests())
    with pytest.raises(KindNotServed):
        cluster.kube.list("example.com/v1", "Widget", "ns")
    assert len(cluster.server.requests()) == before
