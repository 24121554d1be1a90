"""What a user does: `kubectl apply` an LLMJob, change it, `kubectl delete` it, with the real kubectl binary."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from .cluster import wait_for
from .helpers import DATA, REPO, TOKENIZER, child, job_dict

KUBECTL = next((str(p) for p in [REPO / ".tools" / "bin" / "kubectl"] if p.exists()), shutil.which("kubectl"))
pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="needs the kubectl binary (make test installs it into .tools/bin; or put it on PATH)"
)


def kubectl(kubeconfig, *args: str) -> str:
    result = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_kubectl_apply_change_and_delete(cluster, tmp_path):
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig", namespace="team")
    cluster.start_operator()
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(job_dict(DATA, TOKENIZER)))
    # --validate=false: the emulator serves no OpenAPI schema (a real API server does, and the webhook runs too)
    assert "llmjob.llmplatform.dev/demo created" in kubectl(
        kubeconfig, "apply", "-f", str(manifest), "--validate=false"
    )
    wait_for(lambda: cluster.child("Job", child("demo", "data")), what="the data Job")

    manifest.write_text(yaml.safe_dump(job_dict(DATA, TOKENIZER, suspend=True)))
    assert "configured" in kubectl(kubeconfig, "apply", "-f", str(manifest), "--validate=false")
    wait_for(lambda: cluster.child("Job", child("demo", "data"))["spec"]["suspend"] is True, what="the Job suspended")

    assert "deleted" in kubectl(kubeconfig, "delete", "-f", str(manifest), "--wait=false")
    wait_for(lambda: cluster.job("demo") is None, what="the LLMJob gone")
    assert cluster.child("Job", child("demo", "data")) is None
