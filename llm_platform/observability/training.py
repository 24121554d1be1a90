"""Prometheus metrics of a training run, served by rank 0 for the ServiceMonitor to scrape.

The names below are the ones the Grafana training dashboard queries; change them together. Every series carries
the `job` (LLMJob name) and `stage` labels, so one dashboard shows every run.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

LABELS = ("job", "stage")

LOSS = "llmp_train_loss"
LEARNING_RATE = "llmp_train_learning_rate"
GRAD_NORM = "llmp_train_grad_norm"
TOKENS_PER_SECOND = "llmp_train_tokens_per_second"
MFU = "llmp_train_mfu_ratio"
STEP = "llmp_train_step"
TOKENS = "llmp_train_tokens"  # a Counter: exposed as llmp_train_tokens_total
MEMORY = "llmp_train_gpu_memory_bytes"
EXPERT_LOAD = "llmp_train_expert_load_ratio"
VAL_LOSS = "llmp_train_val_loss"


class TrainingMetrics:
    """The gauges and counters of one run, in their own registry (so tests and several runs in one process do not
    collide); `serve(port)` exposes them over HTTP."""

    def __init__(self, job: str, stage: str) -> None:
        self.registry = CollectorRegistry()
        self.labels = {"job": job, "stage": stage}
        r = self.registry

        def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, LABELS + extra, registry=r)

        self.loss = gauge(LOSS, "Training loss of the latest logged step.")
        self.val_loss = gauge(VAL_LOSS, "Validation loss of the latest evaluation.")
        self.lr = gauge(LEARNING_RATE, "Learning rate of the latest step.")
        self.grad_norm = gauge(GRAD_NORM, "Global gradient norm before clipping.")
        self.tokens_per_second = gauge(TOKENS_PER_SECOND, "Training throughput over all processes.")
        self.mfu = gauge(MFU, "Model FLOPs utilisation (0..1) against the accelerator's dense peak.")
        self.step = gauge(STEP, "Optimizer steps done.")
        self.memory = gauge(MEMORY, "Peak GPU memory allocated by rank 0 since the last log.")
        self.expert_load = gauge(
            EXPERT_LOAD, "Share of routed tokens each expert took (1/n_experts is balanced).", ("layer", "expert")
        )
        self.tokens = Counter(TOKENS, "Tokens trained on.", LABELS, registry=r)

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)

    def update(self, record: dict) -> None:
        """Set every metric present in a log record (the same dict the JSONL log gets)."""
        for key, metric in (
            ("loss", self.loss),
            ("val_loss", self.val_loss),
            ("lr", self.lr),
            ("grad_norm", self.grad_norm),
            ("tokens_per_s", self.tokens_per_second),
            ("mfu", self.mfu),
            ("step", self.step),
            ("memory_bytes", self.memory),
        ):
            if record.get(key) is not None:
                metric.labels(**self.labels).set(record[key])
        if record.get("new_tokens"):
            self.tokens.labels(**self.labels).inc(record["new_tokens"])
        for layer, shares in (record.get("expert_load") or {}).items():
            for expert, share in enumerate(shares):
                self.expert_load.labels(**self.labels, layer=str(layer), expert=str(expert)).set(share)
