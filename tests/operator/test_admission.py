"""Admission: `kubectl apply` of a bad LLMJob is refused with the messages `llmp validate` prints."""

from __future__ import annotations

import yaml

from llm_platform.api import SpecError, load_job
from llm_platform.operator.admission import admission_problems

from .cluster import wait_for
from .helpers import DATA, PRETRAIN, TOKENIZER, job_dict


def bad_job():
    body = job_dict(DATA, TOKENIZER, {**PRETRAIN, "train": {"steps": 10, "lr": 5, "warmup_stpes": 3}})
    body["spec"]["stages"][1]["needs"] = ["dta"]
    return body


def test_a_valid_job_is_admitted():
    assert admission_problems(job_dict(DATA, TOKENIZER, PRETRAIN)) is None


def test_a_bad_job_is_refused_with_the_same_problems_as_llmp_validate(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(bad_job(), sort_keys=False))
    try:
        load_job(path)
    except SpecError as e:
        validate_problems = [f"{p.path}: {p.message}" for p in e.problems]
    message = admission_problems(bad_job())
    assert message.startswith(f"invalid LLMJob ({len(validate_problems)} problems):")
    assert [line.removeprefix("  - ") for line in message.splitlines()[1:]] == validate_problems
    assert any("warmup_stpes" in p and "did you mean 'warmup_steps'" in p for p in validate_problems)


def test_a_valid_job_that_cannot_run_on_a_cluster_is_refused_with_the_reason():
    body = job_dict(DATA)
    del body["spec"]["storage"]
    message = admission_problems(body)
    assert message.startswith("LLMJob cannot run on a cluster (1 problem):\n  - spec.storage.uri:")


def test_writes_that_keep_the_spec_pass_so_old_objects_stay_deletable():
    stored = bad_job()
    with_finalizer = {**stored, "metadata": {**stored["metadata"], "finalizers": ["llmplatform.dev/finalizer"]}}
    assert admission_problems(with_finalizer, old=stored) is None
    deleting = {**stored, "metadata": {**stored["metadata"], "deletionTimestamp": "2025-01-01T00:00:00Z"}}
    assert admission_problems(deleting, old=stored) is None


def test_a_spec_change_is_validated():
    assert admission_problems(bad_job(), old=job_dict(DATA, TOKENIZER, PRETRAIN)) is not None


def test_the_operator_serves_the_webhook_and_registers_it(cluster):
    post = cluster.start_webhook()
    port = cluster.webhook_port
    refused = post(bad_job())
    assert refused["allowed"] is False
    assert refused["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert refused["status"]["code"] == 422
    assert refused["status"]["message"] == admission_problems(bad_job())
    assert post(job_dict(DATA, TOKENIZER, PRETRAIN))["allowed"] is True

    config = wait_for(
        lambda: cluster.kube.get(
            "admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", None, "llmjobs.llmplatform.dev"
        ),
        what="the ValidatingWebhookConfiguration",
    )
    (webhook,) = wait_for(lambda: config.get("webhooks") or _refetch(cluster), what="webhooks in it")
    assert webhook["rules"][0]["apiGroups"] == ["llmplatform.dev"]
    assert webhook["rules"][0]["resources"] == ["llmjobs"]
    assert set(webhook["rules"][0]["operations"]) == {"CREATE", "UPDATE"}
    assert webhook["clientConfig"]["url"] == f"http://127.0.0.1:{port}/validate"
    assert webhook["failurePolicy"] == "Fail"


def _refetch(cluster):
    obj = cluster.kube.get(
        "admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", None, "llmjobs.llmplatform.dev"
    )
    return obj.get("webhooks")
