"""`llmp render` and `llmp operator`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request

import yaml
from typer.testing import CliRunner

from llm_platform.cli_operator import app

from .cluster import wait_for
from .helpers import DATA, EXAMPLES, REPO, child, job_dict

runner = CliRunner()


def test_render_prints_every_object_of_the_job():
    result = runner.invoke(app, ["render", str(EXAMPLES / "pipeline.yaml")])
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.output))
    assert [d["kind"] for d in docs] == [
        "ConfigMap", "ServiceAccount", "RayJob", "Job", "PyTorchJob", "PyTorchJob", "PyTorchJob", "Job", "Service",
        "Deployment",
    ]  # fmt: skip


def test_render_one_stage_into_another_namespace_with_another_default_image():
    args = ["render", str(EXAMPLES / "eval.yaml"), "--stage", "eval", "--namespace", "ci", "--image", "me/trainer:dev"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    configmap, account, job = yaml.safe_load_all(result.output)
    assert (
        job["metadata"]["namespace"] == configmap["metadata"]["namespace"] == account["metadata"]["namespace"] == "ci"
    )
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "me/trainer:dev"


def test_render_of_an_invalid_file_prints_the_validation_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(job_dict({**DATA, "kind": "dta"})))
    result = runner.invoke(app, ["render", str(path)])
    assert result.exit_code == 2
    assert "spec.stages[0].kind" in result.output


def test_render_of_a_job_without_cluster_storage_says_what_to_set():
    result = runner.invoke(app, ["render", str(EXAMPLES / "quickstart.yaml")])
    assert result.exit_code == 2
    assert "spec.storage.uri: a cluster run needs storage every pod can reach" in result.output


def test_render_of_an_unknown_stage_lists_the_stages():
    result = runner.invoke(app, ["render", str(EXAMPLES / "eval.yaml"), "--stage", "evel"])
    assert result.exit_code == 2
    assert "no stage named 'evel'; stages are: eval" in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_llmp_operator_runs_from_a_kubeconfig_and_serves_metrics(cluster, tmp_path):
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    metrics_port = _free_port()
    command = [
        sys.executable, "-c", "from llm_platform.cli_operator import app; app()", "operator",
        "--standalone", "--kubeconfig", str(kubeconfig), "--metrics-port", str(metrics_port),
        "--liveness-port", str(_free_port()), "--resync-seconds", "1", "--no-read-artifacts",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        cluster.apply(job_dict(DATA))
        wait_for(
            lambda: cluster.child("Job", child("demo", "data")) or process.poll() is not None,
            timeout=60,
            what="a child",
        )
        assert process.poll() is None, process.stdout.read()

        def scrape():
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
                return response.read().decode()

        wait_for(lambda: 'llmp_operator_jobs{phase="Running"} 1.0' in scrape(), what="the jobs metric")
    finally:
        process.terminate()
        process.wait(30)
