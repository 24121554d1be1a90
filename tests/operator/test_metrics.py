"""The operator's Prometheus metrics."""

from __future__ import annotations

from llm_platform.observability.operator import OperatorMetrics


def test_jobs_by_phase_counts_each_job_once_in_its_latest_phase():
    metrics = OperatorMetrics()
    metrics.job_phase("a", "x", "Running")
    metrics.job_phase("a", "y", "Running")
    metrics.job_phase("a", "x", "Succeeded")
    value = metrics.registry.get_sample_value
    assert value("llmp_operator_jobs", {"phase": "Running"}) == 1
    assert value("llmp_operator_jobs", {"phase": "Succeeded"}) == 1
    metrics.job_phase("a", "y", None)  # deleted
    assert value("llmp_operator_jobs", {"phase": "Running"}) == 0


def test_every_phase_is_exported_from_the_start():
    value = OperatorMetrics().registry.get_sample_value
    assert [value("llmp_operator_jobs", {"phase": p}) for p in ("Pending", "Running", "Failed")] == [0, 0, 0]


def test_two_operators_in_one_process_do_not_share_counters():
    first, second = OperatorMetrics(), OperatorMetrics()
    first.reconciles.labels("ok").inc()
    assert second.registry.get_sample_value("llmp_operator_reconciles_total", {"result": "ok"}) is None
