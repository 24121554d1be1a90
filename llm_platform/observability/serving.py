"""Prometheus metrics of the inference server, under vLLM's own names.

Why vLLM's names (`vllm:num_requests_waiting`, ...) and not an `llmp_serve_` prefix: a serve stage runs either our
engine or vLLM (`serve.engine`), and with the same names one Grafana dashboard, one HPA metric and every existing
vLLM dashboard or alert read both. Label `model_name` as vLLM sets it. What vLLM has no name for (the content filter)
gets ours, `llmp_serve_*`. The serving dashboard queries these names; change them together.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_CACHE_USAGE = "vllm:kv_cache_usage_perc"
PROMPT_TOKENS = "vllm:prompt_tokens"  # Counters: exposed with a _total suffix
GENERATION_TOKENS = "vllm:generation_tokens"
REQUEST_SUCCESS = "vllm:request_success"
TTFT = "vllm:time_to_first_token_seconds"
INTER_TOKEN = "vllm:inter_token_latency_seconds"
E2E = "vllm:e2e_request_latency_seconds"
QUEUE_REJECTED = "llmp_serve_rejected_requests"
CONTENT_FILTER = "llmp_serve_content_filter"

# vLLM's buckets, so histogram_quantile over both engines compares like with like
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0)


class ServingMetrics:
    """The server's metrics in their own registry (several servers in one test process must not collide)."""

    def __init__(self, model_name: str) -> None:
        self.registry = r = CollectorRegistry()
        labels = ("model_name",)
        self.model_name = model_name
        self.running = Gauge(RUNNING, "Requests in the running batch.", labels, registry=r).labels(model_name)
        self.waiting = Gauge(WAITING, "Requests waiting to be scheduled.", labels, registry=r).labels(model_name)
        self.kv_cache_usage = Gauge(KV_CACHE_USAGE, "Fraction of KV cache blocks in use (0..1).", labels, registry=r)
        self.kv_cache_usage = self.kv_cache_usage.labels(model_name)
        self.prompt_tokens = Counter(PROMPT_TOKENS, "Prompt tokens processed.", labels, registry=r).labels(model_name)
        self.generation_tokens = Counter(GENERATION_TOKENS, "Tokens generated.", labels, registry=r)
        self.generation_tokens = self.generation_tokens.labels(model_name)
        self.request_success = Counter(
            REQUEST_SUCCESS, "Finished requests by finish reason.", (*labels, "finished_reason"), registry=r
        )
        self.ttft = Histogram(TTFT, "Time to first token.", labels, buckets=TTFT_BUCKETS, registry=r)
        self.ttft = self.ttft.labels(model_name)
        self.inter_token = Histogram(INTER_TOKEN, "Time between tokens.", labels, buckets=ITL_BUCKETS, registry=r)
        self.inter_token = self.inter_token.labels(model_name)
        self.e2e = Histogram(E2E, "Arrival to last token.", labels, buckets=E2E_BUCKETS, registry=r).labels(model_name)
        self.rejected = Counter(
            QUEUE_REJECTED, "Requests refused before queueing, by reason.", (*labels, "reason"), registry=r
        )
        self.content_filter = Counter(
            CONTENT_FILTER,
            "Texts the content filter flagged, by filter, direction (input/output) and action (logged/blocked).",
            (*labels, "filter", "direction", "action"),
            registry=r,
        )

    def finished(self, reason: str) -> None:
        self.request_success.labels(self.model_name, reason).inc()

    def flagged(self, filter_name: str, direction: str, action: str) -> None:
        self.content_filter.labels(self.model_name, filter_name, direction, action).inc()

    def refused(self, reason: str) -> None:
        self.rejected.labels(self.model_name, reason).inc()
