"""The operator's own metrics: results and durations of reconciles, served in Prometheus' text format."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from llm_operator import metrics
from support.prometheus_server import free_port


def value(name: str, **labels: str) -> float:
    found = REGISTRY.get_sample_value(name, labels)
    return found or 0.0


def test_a_reconcile_counts_its_result_and_its_time() -> None:
    before = value("llm_operator_reconciles_total", result="applied")
    timed = value("llm_operator_reconcile_duration_seconds_count")
    with metrics.reconcile_timer() as result:
        result("applied")
    assert value("llm_operator_reconciles_total", result="applied") == before + 1
    assert value("llm_operator_reconcile_duration_seconds_count") == timed + 1


def test_an_exception_counts_as_error_and_still_raises() -> None:
    before = value("llm_operator_reconciles_total", result="error")
    with pytest.raises(RuntimeError), metrics.reconcile_timer() as result:
        result("applied")
        raise RuntimeError("apiserver gone")
    assert value("llm_operator_reconciles_total", result="error") == before + 1


def test_nothing_said_means_unchanged() -> None:
    before = value("llm_operator_reconciles_total", result="unchanged")
    with metrics.reconcile_timer():
        pass
    assert value("llm_operator_reconciles_total", result="unchanged") == before + 1


def test_a_deleted_llmservice_loses_its_series() -> None:
    metrics.current_replicas.labels("ml", "gone").set(3)
    metrics.desired_replicas.labels("ml", "gone").set(4)
    metrics.forget("ml", "gone")
    metrics.forget("ml", "never-seen")  # nothing to drop is fine
    assert REGISTRY.get_sample_value("llm_operator_current_replicas", {"namespace": "ml", "llmservice": "gone"}) is None


def test_the_endpoint_serves_every_metric_with_conventional_names() -> None:
    port = free_port()
    metrics.serve(port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        families = {f.name: f for f in text_string_to_metric_families(answer.read().decode())}
    for name, kind in {
        "llm_operator_reconciles": "counter", "llm_operator_reconcile_duration_seconds": "histogram",
        "llm_operator_apply_requests": "counter", "llm_operator_autoscaler_decisions": "counter",
        "llm_operator_current_replicas": "gauge", "llm_operator_desired_replicas": "gauge",
        "llm_operator_metric_source_errors": "counter", "llm_operator_fit_check_refusals": "counter",
        "llm_operator_leader": "gauge", "llm_operator_due_queue_length": "gauge",
    }.items():
        assert families[name].type == kind, name
    decisions = {s.labels["decision"] for s in families["llm_operator_autoscaler_decisions"].samples}
    assert decisions >= {"scale_up", "scale_down", "steady", "hold"}


@pytest.mark.parametrize(("current", "desired", "held", "unavailable", "kind"), [
    (2, 3, False, None, "scale_up"), (3, 2, False, None, "scale_down"), (2, 2, False, None, "steady"),
    (2, 2, True, None, "hold"), (2, 3, False, "Prometheus did not answer", "hold"),
])
def test_autoscaler_decisions_are_labelled_by_what_they_did(
    current: int, desired: int, held: bool, unavailable: str | None, kind: str
) -> None:
    from llm_operator.autoscale.policy import Decision, ScalerState
    from llm_operator.controller.autoscaling import _decision_kind

    decision = Decision(desired_replicas=desired, reason="", state=ScalerState(replicas=current), held=held)
    assert _decision_kind(current, decision, unavailable) == kind
