"""The operator scale benchmark's pure parts: its LLMServices are valid, it reads the apiserver's and the
controller-manager's counters, the plain client renders what the operator would apply, and the tables."""

from __future__ import annotations

import pytest
from bench.operator_scale import __main__ as operator_scale
from bench.operator_scale.__main__ import (
    Row,
    by_verb,
    client_throttle,
    llmservice,
    llmservices,
    mean_queue_waits,
    percentile,
    queue_totals,
    requests_by,
    requests_by_verb,
    share,
    table,
)
from bench.operator_scale.plain_client import objects_for
from bench.operator_scale.watching import instance_ready_times, is_available, is_ready

from llm_operator.api.models import LLMService

METRICS = """# HELP apiserver_request_total [STABLE] Counter of apiserver requests
apiserver_request_total{code="200",component="apiserver",group="apps",resource="deployments",verb="APPLY"} 12
apiserver_request_total{code="200",component="apiserver",group="",resource="pods",verb="LIST"} 3
apiserver_request_total{code="200",component="apiserver",group="",resource="pods",verb="WATCH"} 40
apiserver_request_total{code="201",component="apiserver",group="apps",resource="deployments",verb="APPLY"} 2.5e+01
apiserver_request_total{code="200",component="apiserver",resource="llmservices",subresource="status",verb="PATCH"} 4
apiserver_request_duration_seconds_count{verb="GET"} 99
"""

CONTROLLER_MANAGER = """rest_client_rate_limiter_duration_seconds_sum{host="127.0.0.1:1",verb="GET"} 1.5
rest_client_rate_limiter_duration_seconds_sum{host="127.0.0.1:1",verb="POST"} 2.5
rest_client_rate_limiter_duration_seconds_count{host="127.0.0.1:1",verb="POST"} 7
rest_client_requests_total{code="200",host="127.0.0.1:1",method="GET"} 10
rest_client_requests_total{code="201",host="127.0.0.1:1",method="POST"} 5
"""


def test_the_benchmarks_llmservice_is_valid() -> None:
    service = LLMService.model_validate({**llmservice("svc-001"), "metadata": {"name": "svc-001", "namespace": "x"}})
    assert service.spec.resources.gpus == 0


def test_the_autoscaling_mode_autoscales_every_llmservice() -> None:
    body = {**llmservice("svc-001", autoscaling=True), "metadata": {"name": "svc-001", "namespace": "x"}}
    assert LLMService.model_validate(body).spec.autoscaling.enabled


def test_requests_are_counted_by_verb_without_watches() -> None:
    assert requests_by_verb(METRICS) == {"APPLY": 37.0, "LIST": 3.0, "PATCH": 4.0}


def test_requests_are_counted_by_verb_and_resource_with_subresource() -> None:
    assert requests_by(METRICS, "verb", "resource") == {
        "APPLY deployments": 37.0, "LIST pods": 3.0, "PATCH llmservices/status": 4.0}


def test_the_controller_managers_throttling_and_requests_are_summed() -> None:
    assert client_throttle(CONTROLLER_MANAGER) == (4.0, 15.0)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 0.99)) == (10.0, 19.0, 20.0)


def test_the_plain_client_applies_what_the_operator_would() -> None:
    objects = objects_for(llmservices(2, "bench"), "bench")
    kinds = [o["kind"] for o in objects]
    assert kinds.count("Deployment") == 4 and kinds.count("Secret") == 2
    assert {o["metadata"]["namespace"] for o in objects} == {"bench"}
    assert not any(o["metadata"].get("ownerReferences") for o in objects)


def test_an_llmservice_is_ready_when_all_its_deployments_are() -> None:
    times = instance_ready_times({"a": 1.0, "a-router": 3.0, "b": 2.0}, {"a": "a", "a-router": "a", "b": "b"}, 2)
    assert times == {"a": 3.0}


def test_ready_and_available_read_the_conditions_and_replicas() -> None:
    assert is_ready({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    assert not is_ready({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    deployment = {"metadata": {"generation": 2}, "spec": {"replicas": 1},
                  "status": {"observedGeneration": 2, "availableReplicas": 1}}
    assert is_available(deployment)
    assert not is_available({**deployment, "status": {"observedGeneration": 1, "availableReplicas": 1}})


def test_table_has_one_row_per_round_and_the_share_of_the_plain_client() -> None:
    rows = [Row("plain client", 10, 5.0, 3.0, 4.5),
            Row("plain", 10, 12.5, 6.0, 11.0, 3.2, 80.0, 4.5, 27.0, {"APPLY": 3.0}, change_p50_s=0.2,
                change_p99_s=0.5)]
    assert share(rows[1], rows) == 0.4
    assert table(rows).splitlines()[-1] == (
        "| plain | 10 | 12.5 | 0.80 | 40 % | 6.0 | 11.0 | 0.20 | 0.50 | 3.2 | 80 | 4.5 | 27.0 |")
    assert table(rows).splitlines()[-2].startswith("| plain client | 10 | 5.0 | 2.00 | - |")


def test_work_queue_waits_are_per_item_added_slowest_first() -> None:
    before = queue_totals('workqueue_adds_total{name="deployment"} 10\n'
                          'workqueue_queue_duration_seconds_sum{name="deployment"} 5\n')
    after = queue_totals('workqueue_adds_total{name="deployment"} 30\n'
                         'workqueue_queue_duration_seconds_sum{name="deployment"} 205\n'
                         'workqueue_adds_total{name="replicaset"} 4\n'
                         'workqueue_queue_duration_seconds_sum{name="replicaset"} 2\n'
                         'workqueue_adds_total{name="idle"} 0\n')
    assert mean_queue_waits(after, before) == {"deployment": 10.0, "replicaset": 0.5}


def test_rates_by_call_sum_up_by_verb() -> None:
    assert by_verb({"GET deployments/scale": 2.0, "GET pods": 1.5, "POST events": 0.5}) == {"GET": 3.5, "POST": 0.5}


class _PausableOperator:
    def __init__(self) -> None:
        self.running, self.cpu = True, 0.0

    def pause(self) -> None:
        self.running = False

    def resume(self) -> None:
        self.running = True

    def cpu_seconds(self) -> float:
        return self.cpu


def test_the_operators_share_cancels_the_clusters_drift(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cluster's own POST events fall by 10/s per window (the controllers' spam filters relaxing after a
    burst); the operator adds 1 GET/s while it runs. Only the GET is the operator's."""
    operator, windows = _PausableOperator(), iter(range(4))

    def rates(cluster: object, seconds: float) -> dict[str, float]:
        drift = 40.0 - 10.0 * next(windows)
        if operator.running:
            operator.cpu += 0.5 * seconds
            return {"POST events": drift, "GET deployments": 1.0}
        return {"POST events": drift}

    monkeypatch.setattr(operator_scale, "request_rates", rates)
    monkeypatch.setattr(operator_scale.time, "monotonic", iter(range(0, 1000, 15)).__next__)
    share, cpu_percent = operator_scale.operator_share(object(), operator, 60.0)  # type: ignore[arg-type]
    assert share == {"POST events": 0.0, "GET deployments": 1.0}
    assert cpu_percent == 50.0
    assert operator.running  # resumed whatever happens
