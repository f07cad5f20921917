"""The operator's own Prometheus metrics, on `--metrics-port` (prometheus_client's text format at /metrics).

Names follow Prometheus' conventions (`_total` counters, `_seconds` durations) under the prefix
`llm_operator_`. Label values come from small fixed sets, except the namespace/llmservice pair of the
replica gauges (one series each per LLMService, removed when it is deleted).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

PREFIX = "llm_operator"
RECONCILE_RESULTS = ("applied", "unchanged", "refused", "error")
DECISIONS = ("scale_up", "scale_down", "steady", "hold")

reconciles = Counter(
    f"{PREFIX}_reconciles_total", "Reconciles of an LLMService, by result: applied (objects were applied), "
    "unchanged (nothing to apply), refused (an invalid spec or a model that does not fit), error.", ["result"],
)
reconcile_seconds = Histogram(
    f"{PREFIX}_reconcile_duration_seconds", "Time one reconcile of an LLMService took, applies included.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
apply_requests = Counter(
    f"{PREFIX}_apply_requests_total", "Server-side apply requests sent to the apiserver, by object kind.", ["kind"],
)
autoscaler_decisions = Counter(
    f"{PREFIX}_autoscaler_decisions_total", "Autoscaler decisions: scale_up, scale_down, steady (keep the count), "
    "hold (metrics missing or stale: the count is held).", ["decision"],
)
current_replicas = Gauge(
    f"{PREFIX}_current_replicas", "Engine replicas (Pods, or groups across nodes) the workload has, per LLMService.",
    ["namespace", "llmservice"],
)
desired_replicas = Gauge(
    f"{PREFIX}_desired_replicas", "Engine replicas the autoscaler wants, per autoscaled LLMService.",
    ["namespace", "llmservice"],
)
metric_source_errors = Counter(
    f"{PREFIX}_metric_source_errors_total", "Failed reads of the autoscaler's metric source (Prometheus).",
    ["source"],
)
fit_check_refusals = Counter(
    f"{PREFIX}_fit_check_refusals_total", "LLMService specs the fit check refused (counted once per refusal, not "
    "per resync), by reason.", ["reason"],
)
leader = Gauge(f"{PREFIX}_leader", "1 while this operator process holds the leader Lease (or runs alone), else 0.")
due_queue = Gauge(f"{PREFIX}_due_queue_length", "LLMServices waiting for a worker after their children changed.")

for _result in RECONCILE_RESULTS:
    reconciles.labels(_result)
for _decision in DECISIONS:
    autoscaler_decisions.labels(_decision)
metric_source_errors.labels("prometheus")


@contextmanager
def reconcile_timer() -> Iterator[Callable[[str], None]]:
    """Times one reconcile and counts its result: the body calls `done(result)`; an exception counts as error."""
    started = time.perf_counter()
    outcome: list[str] = []
    try:
        yield outcome.append
    except BaseException:
        outcome[:] = ["error"]
        raise
    finally:
        reconcile_seconds.observe(time.perf_counter() - started)
        reconciles.labels(outcome[-1] if outcome else "unchanged").inc()


def forget(namespace: str, name: str) -> None:
    """Drop the per-LLMService series of a deleted LLMService."""
    for gauge in (current_replicas, desired_replicas):
        with suppress(KeyError):
            gauge.remove(namespace, name)


def serve(port: int, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve /metrics on `port` (all addresses) from a daemon thread."""
    start_http_server(port, registry=registry)
