"""The operator scale benchmark's pure parts: its LLMServices are valid, and it reads the apiserver's counters."""

from __future__ import annotations

from bench.operator_scale.__main__ import Row, llmservice, requests_by_verb, table

from llm_operator.api.models import LLMService

METRICS = """# HELP apiserver_request_total [STABLE] Counter of apiserver requests
apiserver_request_total{code="200",component="apiserver",group="apps",resource="deployments",verb="APPLY"} 12
apiserver_request_total{code="200",component="apiserver",group="",resource="pods",verb="LIST"} 3
apiserver_request_total{code="200",component="apiserver",group="",resource="pods",verb="WATCH"} 40
apiserver_request_total{code="201",component="apiserver",group="apps",resource="deployments",verb="APPLY"} 2.5e+01
apiserver_request_duration_seconds_count{verb="GET"} 99
"""


def test_the_benchmarks_llmservice_is_valid() -> None:
    service = LLMService.model_validate({**llmservice("svc-001"), "metadata": {"name": "svc-001", "namespace": "x"}})
    assert service.spec.resources.gpus == 0


def test_the_autoscaling_mode_autoscales_every_llmservice() -> None:
    body = {**llmservice("svc-001", autoscaling=True), "metadata": {"name": "svc-001", "namespace": "x"}}
    assert LLMService.model_validate(body).spec.autoscaling.enabled


def test_requests_are_counted_by_verb_without_watches() -> None:
    assert requests_by_verb(METRICS) == {"APPLY": 37.0, "LIST": 3.0}


def test_table_has_one_row_per_round() -> None:
    rows = [Row("plain", 10, 12.5, 6.0, 11.0, 3.2, 80.0, 4.5, 27.0, {"APPLY": 3.0})]
    assert table(rows).splitlines()[-1] == "| plain | 10 | 12.5 | 6.0 | 11.0 | 3.2 | 80 | 4.5 | 27.0 |"
