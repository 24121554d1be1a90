"""Prometheus metrics of the LLMJob operator, served on its metrics port for the ServiceMonitor to scrape.

The names below are the ones the Grafana operator dashboard queries; change them together.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

RECONCILES = "llmp_operator_reconciles"  # Counter -> llmp_operator_reconciles_total{result}
ERRORS = "llmp_operator_errors"  # Counter -> llmp_operator_errors_total{operation}
RECONCILE_SECONDS = "llmp_operator_reconcile_duration_seconds"
JOBS = "llmp_operator_jobs"  # Gauge{phase}: LLMJobs this operator follows, by phase
CHILDREN_CREATED = "llmp_operator_children_created"  # Counter{kind}
STAGE_RETRIES = "llmp_operator_stage_retries"  # Counter: failed training stages retried from a checkpoint

JOB_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Suspended")


class OperatorMetrics:
    """The operator's counters and gauges in their own registry (tests and several operators in one process do not
    collide); `serve(port)` exposes them over HTTP."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.reconciles = Counter(
            RECONCILES, "Reconciles of LLMJobs, by result (ok, invalid, error, gone, deleting).", ["result"], registry=r
        )
        self.errors = Counter(
            ERRORS, "Failed Kubernetes or storage operations, by operation.", ["operation"], registry=r
        )
        self.duration = Histogram(
            RECONCILE_SECONDS,
            "Time to reconcile one LLMJob.",
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.jobs = Gauge(JOBS, "LLMJobs followed by this operator, by phase.", ["phase"], registry=r)
        self.children_created = Counter(CHILDREN_CREATED, "Stage workloads created, by kind.", ["kind"], registry=r)
        self.stage_retries = Counter(
            STAGE_RETRIES, "Failed training stages retried from their latest checkpoint.", registry=r
        )
        for phase in JOB_PHASES:
            self.jobs.labels(phase).set(0)
        self._phases: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def job_phase(self, namespace: str, name: str, phase: str | None) -> None:
        """Record a job's phase (None: the job is gone) and recount the per-phase gauge."""
        with self._lock:
            if phase is None:
                self._phases.pop((namespace, name), None)
            else:
                self._phases[(namespace, name)] = phase
            counts = {p: 0 for p in JOB_PHASES}
            for p in self._phases.values():
                counts[p] = counts.get(p, 0) + 1
        for p, n in counts.items():
            self.jobs.labels(p).set(n)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        start_http_server(port, addr=addr, registry=self.registry)
