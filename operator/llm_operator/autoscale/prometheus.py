"""Metric samples for the scaling policy, read from Prometheus (the only I/O of autoscaling).

Every query selects the engine Pods of one LLMService by `namespace` and `pod` labels (what
Kubernetes service discovery and the Prometheus Operator attach to scraped targets) and asks
for a short range, so each value comes with the time it was really scraped: a replica whose
newest sample is older than the policy's staleness limit counts as not reporting. A range query
does not return the staleness marker Prometheus writes when a scrape fails, so it would hand
back the value from before the failure (often the idle 0 from before a load); a series whose
newest sample is more than MISSED_SCRAPES of its own scrape intervals old is left out too.

Metric names come from each engine's descriptor (engines/*.py: `EngineMetrics`). Besides those:
- every GPU: DCGM_FI_DEV_GPU_UTIL from NVIDIA's dcgm-exporter (scraped with honor_labels, so
  `namespace` and `pod` are the workload's, not the exporter's);
- an engine without a queue metric (Ollama): the router's in-flight requests are its queue.
  LiteLLM's Prometheus callback exports `litellm_in_flight_requests` per proxy process (one
  router serves one local model); every scrape is itself in flight, so one per series is removed;
- the prompt-token rate as irate over the last two scrapes: a longer rate() smooths away the
  bursts the policy provisions for. A Pod's series (SGLang has one per `is_streaming`) add up.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException

from llm_operator.autoscale.policy import Sample
from llm_operator.engines import ENGINES, EngineMetrics

QUERY_TIMEOUT_SECONDS = 5
LOOKBACK = "1m"


# A series is current while its newest sample is at most this many scrape intervals old (the interval
# measured from its own samples), plus CLOCK_SLACK_S for the operator's and Prometheus' clocks.
MISSED_SCRAPES = 2
CLOCK_SLACK_S = 2.0


def is_current(timestamps: Sequence[float], now: float) -> bool:
    """Whether a series' scrapes are still arriving: its newest sample is no older than MISSED_SCRAPES
    of its median scrape interval (+ CLOCK_SLACK_S). One sample gives no interval: current (the
    policy's own staleness limit still applies)."""
    if len(timestamps) < 2:
        return True
    gaps = sorted(later - earlier for earlier, later in pairwise(sorted(timestamps)))
    interval = gaps[len(gaps) // 2]
    return now - max(timestamps) <= MISSED_SCRAPES * interval + CLOCK_SLACK_S


class MetricsUnavailable(Exception):
    """Prometheus did not answer; the policy must hold, not guess."""


GPU_UTILIZATION = "DCGM_FI_DEV_GPU_UTIL"
ROUTER_IN_FLIGHT = "litellm_in_flight_requests"


@dataclass(frozen=True)
class Series:
    pod: str
    timestamp: float
    value: float


def _labels(namespace: str, pods: Sequence[str]) -> str:
    alternatives = "|".join(sorted(pods)) or "^$"
    return f'namespace="{namespace}",pod=~"{alternatives}"'


def _selector(namespace: str, pods: Sequence[str]) -> str:
    return "{" + _labels(namespace, pods) + "}"


Points = list[tuple[float, float]]


class PrometheusMetrics:
    def __init__(self, url: str, timeout: int = QUERY_TIMEOUT_SECONDS) -> None:
        self.url = url
        self.client = PrometheusConnect(url=url, disable_ssl=True, timeout=timeout)
        self.timeout = timeout

    def _query(self, query: str) -> list[dict]:
        try:
            return self.client.custom_query(query, timeout=self.timeout)
        except (requests.RequestException, PrometheusApiClientException) as error:
            # The first line of the cause is enough for a condition message; the query is not.
            cause = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            raise MetricsUnavailable(f"Prometheus at {self.url} did not answer: {cause}") from error

    def _latest(self, query: str) -> list[Series]:
        """The newest sample of every series a range query returns."""
        return [_newest(item["metric"].get("pod", ""), points) for item in self._query(query)
                if (points := _points(item)) and is_current([t for t, _ in points], time.time())]

    def _series_by_name(self, names: Sequence[str], labels: str) -> dict[str, list[tuple[str, Points]]]:
        """Every series of `names` for the selected Pods over the lookback, in one range query, by metric
        name: one request per LLMService and tick whatever the number of signals."""
        pattern = "|".join(re.escape(name) for name in sorted(set(names)))
        found: dict[str, list[tuple[str, Points]]] = {}
        for item in self._query(f'{{__name__=~"{pattern}",{labels}}}[{LOOKBACK}]'):
            points = _points(item)
            # A replica whose newest value is NaN or infinite reports no number now: as if it reported none
            # (the policy holds on a signal some ready replica lacks); older non-finite points are dropped.
            if not points or not math.isfinite(points[-1][1]):
                continue
            points = [(t, v) for t, v in points if math.isfinite(v)]
            if is_current([t for t, _ in points], time.time()):
                found.setdefault(item["metric"].get("__name__", ""), []).append((item["metric"].get("pod", ""), points))
        return found

    def sample(
        self, engine: str, namespace: str, ready_pods: Sequence[str], starting: int, router_pods: Sequence[str],
        parallel_slots: int = 1,
    ) -> Sample:
        """One policy Sample. A signal is None unless every ready Pod reported it."""
        names = ENGINES[engine].metrics
        found = self._series_by_name(_engine_names(names), _labels(namespace, ready_pods))
        series = {
            "waiting": _first_present(found, names.waiting),
            "running": _first_present(found, names.running),
            "kv": _first_present(found, names.kv_cache),
            "gpu": _gauge(found, GPU_UTILIZATION),
        }
        prompt = _rate(found, names.prompt_tokens)
        generation = _rate(found, names.generation_tokens)
        latency = _latency_rates(found, names, ready_pods)
        router_selector = _selector(namespace, router_pods)
        router = self._latest(f"{ROUTER_IN_FLIGHT}{router_selector}[{LOOKBACK}]") if router_pods else []
        in_flight = max(0.0, sum(s.value for s in router) - len(router)) if router else None
        timestamps = [s.timestamp for values in series.values() for s in values] + [s.timestamp for s in router]
        return Sample(
            # With no series at all, the sample is "now, with no signal": the policy holds on that.
            timestamp=min(timestamps) if timestamps else time.time(),
            ready_replicas=len(ready_pods),
            starting_replicas=starting,
            waiting_requests=_total(series["waiting"], ready_pods) if names.waiting else _router_waiting(
                in_flight, parallel_slots, len(ready_pods)
            ),
            running_requests=_total(series["running"], ready_pods),
            kv_cache_usage=_mean(series["kv"], ready_pods),
            gpu_utilization=_mean(series["gpu"], ready_pods),
            router_in_flight=in_flight,
            prompt_tokens_per_s=_total(prompt, ready_pods),
            generation_tokens_per_s=_total(generation, ready_pods),
            **latency,
        )


def _engine_names(names: EngineMetrics) -> list[str]:
    """The metric names one engine's Sample reads (histograms by their _count and _sum series)."""
    histogram_series = [f"{names.first_token_seconds}_count", f"{names.first_token_seconds}_sum"] \
        if names.first_token_seconds else []
    histogram_series += [f"{name}_sum" for name in (names.prefill_seconds, names.queue_seconds) if name]
    counters = [name for name in (names.prompt_tokens, names.generation_tokens) if name]
    return [*names.waiting, *names.running, *names.kv_cache, GPU_UTILIZATION, *counters, *histogram_series]


def _points(item: dict) -> Points:
    # A range query gives "values" (with the scrape times); an instant one "value".
    values = item.get("values") or ([item["value"]] if "value" in item else [])
    return [(float(t), float(v)) for t, v in values]


def _newest(pod: str, points: Points) -> Series:
    timestamp, value = points[-1]
    return Series(pod, timestamp, value)


def _gauge(found: dict[str, list[tuple[str, Points]]], name: str) -> list[Series]:
    return [_newest(pod, points) for pod, points in found.get(name, [])]


def _first_present(found: dict[str, list[tuple[str, Points]]], names: Sequence[str]) -> list[Series]:
    """The first of `names` that has series (an engine's renamed metric is listed after its new name)."""
    return next((series for name in names if (series := _gauge(found, name))), [])


def _rate(found: dict[str, list[tuple[str, Points]]], counter: str | None) -> list[Series]:
    """irate() per series: the counter's increase over its last two samples, per second (a reset counts
    from zero); nothing for a series with one sample or an engine without the counter."""
    rates = []
    for pod, points in found.get(counter, []) if counter else []:
        if len(points) < 2:
            continue
        (before, earlier), (timestamp, later) = points[-2], points[-1]
        if timestamp > before:
            increase = later - earlier if later >= earlier else later
            rates.append(Series(pod, timestamp, increase / (timestamp - before)))
    return rates


def _latency_rates(found: dict[str, list[tuple[str, Points]]], names: EngineMetrics,
                   pods: Sequence[str]) -> dict[str, float | None]:
    """First tokens per second and the prefill and queue seconds they took, per second, from the engine's
    histograms; prefill is TTFT minus queueing when the engine has no prefill histogram."""
    if not names.first_token_seconds:
        return {}
    first = _total(_rate(found, f"{names.first_token_seconds}_count"), pods)
    queue = _total(_rate(found, f"{names.queue_seconds}_sum"), pods) if names.queue_seconds else None
    if names.prefill_seconds:
        prefill = _total(_rate(found, f"{names.prefill_seconds}_sum"), pods)
    else:
        ttft = _total(_rate(found, f"{names.first_token_seconds}_sum"), pods)
        prefill = None if ttft is None or queue is None else max(0.0, ttft - queue)
    return {"first_tokens_per_s": first, "prefill_seconds_per_s": prefill, "queue_seconds_per_s": queue}


def _router_waiting(in_flight: float | None, slots: int, ready: int) -> float | None:
    """An engine without metrics (Ollama) is as busy as the router says: what the ready replicas'
    parallel slots cannot hold is waiting."""
    return None if in_flight is None else max(0.0, in_flight - slots * ready)


def _complete(series: list[Series], pods: Sequence[str]) -> bool:
    return bool(pods) and {s.pod for s in series} >= set(pods)


def _total(series: list[Series], pods: Sequence[str]) -> float | None:
    return sum(s.value for s in series) if _complete(series, pods) else None


def _mean(series: list[Series], pods: Sequence[str]) -> float | None:
    """Mean over GPUs/replicas (a Pod with several GPUs reports one series per GPU)."""
    return sum(s.value for s in series) / len(series) if _complete(series, pods) else None
