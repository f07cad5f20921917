"""Which Prometheus series count as current (llm_operator.autoscale.prometheus.is_current)."""

import pytest

from llm_operator.autoscale.prometheus import CLOCK_SLACK_S, MISSED_SCRAPES, is_current


def scrapes(every: float, count: int, last: float = 1000.0) -> list[float]:
    return [last - every * i for i in reversed(range(count))]


def test_a_series_scraped_on_time_is_current() -> None:
    assert is_current(scrapes(15, 4), now=1000 + 14)
    assert is_current(scrapes(1, 60), now=1000 + 0.9)


def test_a_series_whose_scrapes_stopped_is_not_current() -> None:
    # Scraped every second until the load began, then every scrape timed out for 5 s: the newest
    # value (the idle 0 from before) must not stand for now.
    assert not is_current(scrapes(1, 60), now=1000 + MISSED_SCRAPES * 1 + CLOCK_SLACK_S + 0.5)
    assert not is_current(scrapes(15, 4), now=1000 + MISSED_SCRAPES * 15 + CLOCK_SLACK_S + 1)


def test_one_missed_scrape_is_tolerated() -> None:
    assert is_current(scrapes(10, 6), now=1000 + 19)


def test_the_interval_is_the_median_so_one_long_gap_does_not_widen_it() -> None:
    timestamps = [*scrapes(1, 30, last=950.0), *scrapes(1, 10, last=1000.0)]  # a 41 s gap in the middle
    assert is_current(timestamps, now=1001)
    assert not is_current(timestamps, now=1010)


def test_a_single_sample_is_left_to_the_policy() -> None:
    assert is_current([1000.0], now=1030)
    assert is_current([], now=1030)


# --- one range query per tick: the helpers that turn its series into signals ----------------------------

def test_one_query_names_every_signal_of_the_engine() -> None:
    from llm_operator.autoscale.prometheus import GPU_UTILIZATION, _engine_names
    from llm_operator.engines import ENGINES

    vllm = _engine_names(ENGINES["vllm"].metrics)
    assert {"vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc",
            "vllm:prompt_tokens_total", "vllm:time_to_first_token_seconds_count",
            "vllm:request_prefill_time_seconds_sum", "vllm:request_queue_time_seconds_sum",
            GPU_UTILIZATION} <= set(vllm)
    assert _engine_names(ENGINES["ollama"].metrics) == [GPU_UTILIZATION]


def test_irate_from_the_last_two_samples_and_counter_resets() -> None:
    from llm_operator.autoscale.prometheus import _rate

    found = {"c": [("a", [(0.0, 10.0), (15.0, 40.0), (30.0, 100.0)]), ("b", [(0.0, 500.0), (15.0, 30.0)]),
                   ("lonely", [(15.0, 5.0)])]}
    rates = {s.pod: s.value for s in _rate(found, "c")}
    assert rates == {"a": 4.0, "b": 2.0}  # b restarted: 30 tokens since the reset over 15 s
    assert _rate(found, None) == [] and _rate(found, "missing") == []


def test_the_first_name_with_series_wins() -> None:
    from llm_operator.autoscale.prometheus import _first_present

    found = {"old_name": [("a", [(0.0, 0.5)])], "new_name": [("a", [(0.0, 0.7)])]}
    assert [s.value for s in _first_present(found, ("new_name", "old_name"))] == [0.7]
    assert [s.value for s in _first_present(found, ("absent", "old_name"))] == [0.5]
    assert _first_present(found, ("absent",)) == []


def test_a_replica_reporting_nan_counts_as_not_reporting(monkeypatch) -> None:
    """Prometheus answering NaN (or +Inf) for one replica's KV cache: the signal is missing, not NaN, so the
    policy holds instead of failing on float('nan'); a finite replica's value is still read."""
    import time

    from llm_operator.autoscale.prometheus import PrometheusMetrics

    now = time.time()
    answers = {"a": ["0.5", "NaN"], "b": ["0.4", "0.6"], "c": ["+Inf", "0.7"]}
    items = [{"metric": {"__name__": "vllm:kv_cache_usage_perc", "pod": pod},
              "values": [[now - 15, first], [now - 1, last]]} for pod, (first, last) in answers.items()]
    metrics = PrometheusMetrics("http://prometheus.invalid")
    monkeypatch.setattr(metrics, "_query", lambda query: items)
    assert metrics.sample("vllm", "ml", ["a", "b"], 0, []).kv_cache_usage is None
    assert metrics.sample("vllm", "ml", ["b", "c"], 0, []).kv_cache_usage == pytest.approx(0.65)
