"""The dashboards against a real Prometheus: a tiny real MoE training (the real loop, on CPU) serving its metrics, a
real Reconciler driving the operator's metrics against the Kubernetes API emulator, Prometheus scraping both every
second, and every query of both dashboards run over its HTTP API as Grafana would send it."""

from __future__ import annotations

import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from llm_platform.observability.operator import OperatorMetrics
from llm_platform.operator.kube import Kube
from llm_platform.operator.reconcile import ReconcileError, Reconciler
from llm_platform.trainer.data.loader import PretrainLoader
from llm_platform.trainer.model import flops_per_token, get_config
from llm_platform.trainer.model.transformer import Transformer
from llm_platform.trainer.train.config import TrainConfig
from llm_platform.trainer.train.distributed import DistEnv
from llm_platform.trainer.train.loop import TrainResult, train
from llm_platform.trainer.train.metrics import MetricsLog

from ..operator.cluster import Cluster
from ..operator.helpers import DATA, PRETRAIN, TOKENIZER, child, job_dict
from ..trainer.train.fixtures import corpus_token_file
from .dashboards import LABEL_VALUES, NAMES, exprs, instantiate, load, panels, queried_series, variable_query, variables
from .prometheus import INSTALL_HINT, Prometheus, find_tool, free_port, scrape_config

JOB, STAGE = "tiny-moe", "pretrain"
# What Grafana substitutes before sending a query: the selected run, and its interval macros.
GRAFANA_VALUES = {"job": JOB, "stage": STAGE, "__rate_interval": "15s", "__range": "5m"}
SEQ_LEN, VOCAB, VAL_TOKENS = 32, 384, 3000
CPU_PEAK_FLOPS = "1e11"  # about two x86 cores' fp32 peak, so the loop computes an MFU on CPU


@dataclass
class Scraped:
    prometheus: Prometheus
    config: Path
    promtool: Path
    training: TrainResult


def train_tiny_moe(log: MetricsLog, tokens: np.ndarray) -> TrainResult:
    """Four steps of a two-layer, four-expert model with evaluation every two steps, logging every step to `log`."""
    torch.manual_seed(0)
    model = get_config("mixtral-tiny", vocab_size=VOCAB, dim=64, n_heads=4, num_kv_heads=2, ffn_dim=64, max_seq_len=64)
    config = TrainConfig(
        steps=4,
        micro_batch=4,
        seq_len=SEQ_LEN,
        lr=3e-3,
        warmup_steps=1,
        precision="fp32",
        log_every=1,
        eval_every=2,
        eval_batches=2,
    )
    loader = PretrainLoader(tokens[:-VAL_TOKENS], SEQ_LEN, micro_batch=4, seed=0)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LLMP_PEAK_FLOPS", CPU_PEAK_FLOPS)
        return train(
            Transformer(model),
            config,
            loader,
            DistEnv(),
            val_tokens=tokens[-VAL_TOKENS:],
            log=log,
            console=Console(quiet=True),
            flops_per_token=flops_per_token(model, SEQ_LEN),
        )


def reconcile_jobs(metrics: OperatorMetrics) -> None:
    """The real Reconciler against the API emulator, on a cluster without KubeRay: a pipeline up to its training
    stage, whose failure is retried; a job needing a RayJob, which the cluster refuses; a job that is gone."""
    cluster = Cluster()
    try:
        cluster.server.emulator.resources.pop("ray.io/v1/rayjobs")
        reconciler = Reconciler(Kube(cluster.configuration), metrics=metrics)
        cluster.apply(job_dict(DATA, TOKENIZER, PRETRAIN, max_retries=1))
        reconciler.reconcile("team", "demo")
        cluster.finish("Job", child("demo", "data"), "Succeeded")
        reconciler.reconcile("team", "demo")
        cluster.finish("Job", child("demo", "tok"), "Succeeded")
        reconciler.reconcile("team", "demo")
        cluster.finish("PyTorchJob", child("demo", "pretrain"), "Failed", "NCCL watchdog timeout")
        reconciler.reconcile("team", "demo")  # plans the retry: deletes the failed attempt
        reconciler.reconcile("team", "demo")  # creates attempt 2
        cluster.apply(job_dict({**DATA, "data": {"engine": "ray", "sources": [{"type": "stdlib"}]}}, name="on-ray"))
        with pytest.raises(ReconcileError, match="does not serve ray.io/v1 RayJob"):
            reconciler.reconcile("team", "on-ray")
        assert reconciler.reconcile("team", "gone") is None
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def scraped(tmp_path_factory) -> Scraped:
    binary, promtool = find_tool("prometheus"), find_tool("promtool")
    if binary is None or promtool is None:
        pytest.skip(f"needs the prometheus and promtool binaries on PATH or in .tools/bin: run `{INSTALL_HINT}`")
    folder = tmp_path_factory.mktemp("prometheus")
    training_port, operator_port = free_port(), free_port()
    config = folder / "prometheus.yml"
    config.write_text(
        scrape_config({"llmp-training": f"127.0.0.1:{training_port}", "llmp-operator": f"127.0.0.1:{operator_port}"})
    )
    # Started first: Prometheus hands new targets to its scrapers only after a few seconds, which the training covers.
    prometheus = Prometheus(binary, config, folder / "data", free_port())
    try:
        operator_metrics = OperatorMetrics()
        operator_metrics.serve(operator_port, addr="127.0.0.1")
        log = MetricsLog(None, metrics_port=training_port, job=JOB, stage=STAGE)
        tokens = np.fromfile(corpus_token_file(folder / "corpus", VOCAB), dtype=np.uint16)
        result = train_tiny_moe(log, tokens)
        # The loop reads GPU memory from CUDA only; on CPU, feed that gauge through the same sink (with this
        # process's peak resident memory) so the memory panel's query is checked as well.
        log.write({"memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024})
        reconcile_jobs(operator_metrics)
        done = time.time()
        prometheus.wait_ready()
        prometheus.wait_for("count(up == 1) == 2", "both targets up")
        prometheus.wait_for_scrapes_since(done)
        yield Scraped(prometheus, config, promtool, result)
    finally:
        prometheus.stop()


def test_promtool_accepts_the_scrape_config(scraped):
    checked = subprocess.run(
        [str(scraped.promtool), "check", "config", str(scraped.config)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_prometheus_scrapes_the_training_and_operator_endpoints(scraped):
    up = scraped.prometheus.query("up")["data"]["result"]
    assert {r["metric"]["job"]: r["value"][1] for r in up} == {"llmp-training": "1", "llmp-operator": "1"}


@pytest.mark.parametrize("name", ["training", "operator"])  # serving: test_serving_dashboard_prometheus.py
def test_every_dashboard_query_returns_series(scraped, name):
    failures = []
    for expr in exprs(load(name)):
        query = instantiate(expr, GRAFANA_VALUES)
        answer = scraped.prometheus.query(query)
        if answer["status"] != "success" or not answer["data"]["result"]:
            failures.append(f"{query}: {answer.get('error') or 'no series'}")
    assert not failures, "\n".join(failures)


def test_the_run_selectors_offer_the_running_job_and_stage(scraped):
    for variable, wanted in (("job", JOB), ("stage", STAGE)):
        parsed = LABEL_VALUES.match(variable_query(variables(load("training"))[variable]))
        match = instantiate(parsed["match"], GRAFANA_VALUES)
        answer = scraped.prometheus.get(f"/api/v1/label/{parsed['label']}/values", **{"match[]": match})
        assert answer["data"] == [wanted], (variable, answer)


def test_training_panels_show_what_the_run_logged(scraped):
    board = load("training")
    by_title = {p["title"]: p for p in panels(board) if p["type"] != "row"}
    last = scraped.training.records[-1]

    def shown(title: str, ref: str = "A") -> float:
        target = next(t for t in by_title[title]["targets"] if t["refId"] == ref)
        (value,) = scraped.prometheus.values(instantiate(target["expr"], GRAFANA_VALUES))
        return value

    assert shown("Step") == last["step"] == 4
    assert shown("Loss") == pytest.approx(last["loss"])
    assert shown("Loss", "B") == pytest.approx(scraped.training.val_loss, abs=1e-5)
    assert shown("MFU") == pytest.approx(last["mfu"])
    counted = scraped.prometheus.values(f'llmp_train_tokens_total{{job="{JOB}", stage="{STAGE}"}}')
    assert counted == [sum(r.get("new_tokens", 0) for r in scraped.training.records)]


def test_every_llmp_series_prometheus_stored_is_on_a_dashboard(scraped):
    names = scraped.prometheus.get("/api/v1/label/__name__/values")["data"]
    stored = {n for n in names if n.startswith("llmp_") and not n.endswith("_created")}  # client start timestamps
    assert len(stored) > 10
    shown = set().union(*(queried_series(load(name)) for name in NAMES))
    assert stored - shown == set()
