"""The autoscaling policies compared, each reduced to its published decision rule.

Every policy sees the same `ClusterView` (Deployment replicas, readiness and
the metrics a Prometheus scrape would return) at its own sync period.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from bench.autoscale.calibration import Hardware
from bench.autoscale.simulator import ClusterView
from bench.autoscale.traces import Trace
from llm_operator.autoscale.policy import PolicyConfig, Sample, ScalerState, decide


@dataclass
class StaticPolicy:
    """A fixed replica count, always on (provisioning for the peak)."""

    replicas: int
    name: str = "static-peak"
    period_s: int = 60

    def initial_replicas(self) -> int:
        return self.replicas

    def decide(self, view: ClusterView) -> int:
        return self.replicas


class _HorizontalPodAutoscaler:
    """The HPA controller's loop (pkg/controller/podautoscaler): ratio, tolerance, behaviour.

    Defaults: 15 s sync (--horizontal-pod-autoscaler-sync-period), 10 % tolerance,
    scale-up window 0 s with at most max(4 Pods, 100 %) per 15 s, scale-down
    stabilization 300 s (the highest recommendation of the window wins).
    """

    name = "hpa"
    period_s = 15
    tolerance = 0.1
    scale_down_window_s = 300.0

    def __init__(self, min_replicas: int, max_replicas: int):
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.recommendations: deque[tuple[float, int]] = deque()

    def initial_replicas(self) -> int:
        return self.min_replicas

    def recommend(self, view: ClusterView) -> int | None:
        raise NotImplementedError

    def decide(self, view: ClusterView) -> int:
        current = view.replicas
        raw = self.recommend(view)
        if raw is None:
            return current
        raw = min(max(raw, self.min_replicas), self.max_replicas)
        self.recommendations.append((view.now, raw))
        while self.recommendations[0][0] < view.now - self.scale_down_window_s:
            self.recommendations.popleft()
        down_limit = max(replicas for _, replicas in self.recommendations)
        desired = raw if raw > current else min(current, down_limit)
        return min(desired, max(current + 4, 2 * current))


class HpaGpuUtilization(_HorizontalPodAutoscaler):
    """HPA on DCGM_FI_DEV_GPU_UTIL (Pods metric through a Prometheus adapter), target 80 %.

    As in the HPA controller, Pods that are not ready count as 0 % when the
    ratio asks for a scale-up, and are left out of a scale-down.
    """

    name = "hpa-gpu-util"

    def __init__(self, min_replicas: int, max_replicas: int, target_percent: float = 80.0):
        super().__init__(min_replicas, max_replicas)
        self.target = target_percent

    def recommend(self, view: ClusterView) -> int | None:
        if not view.ready or view.gpu_util is None:
            return None
        ratio = view.gpu_util / self.target
        pods = view.ready
        if ratio > 1.0 and view.starting:
            pods = view.replicas
            ratio = view.gpu_util * view.ready / (self.target * pods)
        if abs(ratio - 1.0) <= self.tolerance:
            return view.replicas
        return math.ceil(ratio * pods)


class KedaQueue(_HorizontalPodAutoscaler):
    """KEDA Prometheus trigger on sum(vllm:num_requests_waiting), threshold 5 (AverageValue).

    As the vLLM production-stack Helm chart ships it: KEDA polls every 15 s and
    feeds an HPA with the default behaviour (300 s scale-down stabilization);
    cooldownPeriod only applies to scaling to zero, which minReplicaCount >= 1 rules out.
    """

    name = "keda-queue"

    def __init__(self, min_replicas: int, max_replicas: int, threshold: float = 5.0):
        super().__init__(min_replicas, max_replicas)
        self.threshold = threshold

    def recommend(self, view: ClusterView) -> int | None:
        ratio = view.waiting / (self.threshold * view.replicas)
        if abs(ratio - 1.0) <= self.tolerance:
            return view.replicas
        return math.ceil(view.waiting / self.threshold)


class KubeAI:
    """KubeAI's model autoscaler: ceil(average active requests / targetRequests).

    Defaults of KubeAI's config: interval 10 s, averaging window 10 min,
    targetRequests 100 per replica, scaleDownDelaySeconds 30.
    """

    name = "kubeai"
    period_s = 10

    def __init__(
        self,
        min_replicas: int,
        max_replicas: int,
        target_requests: float = 100.0,
        window_s: float = 600.0,
        scale_down_delay_s: float = 30.0,
    ):
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.target_requests = target_requests
        self.active: deque[int] = deque(maxlen=int(window_s // self.period_s))
        self.scale_down_delay_s = scale_down_delay_s
        self.lower_since: float | None = None

    def initial_replicas(self) -> int:
        return self.min_replicas

    def decide(self, view: ClusterView) -> int:
        self.active.append(view.router_in_flight)
        wanted = math.ceil(sum(self.active) / len(self.active) / self.target_requests)
        wanted = min(max(wanted, self.min_replicas), self.max_replicas)
        if wanted >= view.replicas:
            self.lower_since = None
            return wanted
        self.lower_since = view.now if self.lower_since is None else self.lower_since
        return wanted if view.now - self.lower_since >= self.scale_down_delay_s else view.replicas


class OurPolicy:
    """The operator's own `llm_operator.autoscale.policy.decide`, fed one sample per 15 s scrape."""

    name = "ours"
    period_s = 15

    def __init__(self, config: PolicyConfig):
        self.config = config
        self.state = ScalerState(replicas=config.min_replicas)
        self.history: deque[Sample] = deque()
        self.last_reason = ""
        self.last_scrape: ClusterView | None = None  # the counters of the last scrape
        self.keep_s = max(config.window_s, config.prompt_rate_peak_window_s)

    def initial_replicas(self) -> int:
        return self.config.min_replicas

    def rates(self, view: ClusterView) -> dict[str, float | None]:
        """irate() of each counter: its increase between the last two scrapes, per second."""
        previous, self.last_scrape = self.last_scrape, view
        names = {"prompt_tokens_per_s": "prompt_tokens_total", "first_tokens_per_s": "first_tokens_total",
                 "prefill_seconds_per_s": "prefill_seconds_total", "queue_seconds_per_s": "queue_seconds_total",
                 "generation_tokens_per_s": "generation_tokens_total"}
        if previous is None or view.now <= previous.now:
            return dict.fromkeys(names)
        elapsed = view.now - previous.now
        return {rate: (getattr(view, total) - getattr(previous, total)) / elapsed for rate, total in names.items()}

    def decide(self, view: ClusterView) -> int:
        engines_report = view.ready > 0
        rates = {name: value if engines_report else None for name, value in self.rates(view).items()}
        self.history.append(
            Sample(
                timestamp=view.now,
                ready_replicas=view.ready,
                starting_replicas=view.starting,
                waiting_requests=view.waiting if engines_report else None,
                running_requests=view.running if engines_report else None,
                kv_cache_usage=view.kv_usage,
                gpu_utilization=view.gpu_util,
                router_in_flight=view.router_in_flight,
                **rates,
            )
        )
        while self.history[0].timestamp < view.now - self.keep_s:
            self.history.popleft()
        # The operator reads the Deployment's replicas each time; so does the bench.
        state = self.state if self.state.replicas == view.replicas else ScalerState(replicas=view.replicas)
        decision = decide(list(self.history), state, self.config, view.now)
        self.state = decision.state
        self.last_reason = decision.reason
        return decision.desired_replicas


class OraclePolicy:
    """Follows a replica schedule computed from the whole trace in advance."""

    name = "oracle"
    period_s = 1

    def __init__(self, schedule: np.ndarray):
        self.schedule = schedule

    def initial_replicas(self) -> int:
        return int(self.schedule[0])

    def decide(self, view: ClusterView) -> int:
        return int(self.schedule[min(int(view.now), len(self.schedule) - 1)])


# Decode tokens are batched: one step of `step_floor_s` serves the whole batch. The
# oracle's work estimate assumes this typical batch size; `utilization` absorbs the error.
ORACLE_DECODE_BATCH = 32


def oracle_schedule(
    trace: Trace,
    hardware: Hardware,
    utilization: float,
    cold_start_s: float,
    min_replicas: int,
    max_replicas: int,
    window_s: int = 30,
) -> np.ndarray:
    """Replicas per second for a fleet that knows every future request.

    Work per request in GPU-seconds: prompt / token rate + output x step floor /
    batch. Each second needs ceil(work arriving over the next `window_s`
    seconds / (window_s x utilization)) replicas. A replica must be created
    `cold_start_s` before it is needed, and an idle gap shorter than a cold
    start is cheaper to keep than to restart: both amount to taking the maximum
    need over the next `cold_start_s` seconds.
    """
    horizon = math.ceil(trace.duration_s) + 1
    work = (
        trace.prompt_tokens / hardware.token_rate_per_s
        + trace.output_tokens * hardware.step_floor_s / ORACLE_DECODE_BATCH
    )
    per_second = np.bincount(trace.arrival_s.astype(np.int64), weights=work, minlength=horizon)[:horizon]
    ahead = _forward_window_sum(per_second, window_s)
    needed = np.ceil(ahead / (window_s * utilization))
    provisioned = _forward_window_max(needed, int(cold_start_s) + 1)
    return np.clip(provisioned, min_replicas, max_replicas).astype(np.int64)


def provisioned_schedule(need: np.ndarray, segment_s: int, horizon: int, cold_start_s: float) -> np.ndarray:
    """Deployment replicas per second so that `need[k]` replicas are ready through segment k.

    A replica is created one cold start before the first segment that needs it, and a gap shorter
    than a cold start is bridged (keeping it costs no more than restarting it): the maximum need
    over the next `cold_start_s` seconds.
    """
    per_second = np.repeat(need, segment_s)[:horizon]
    return _forward_window_max(per_second, int(cold_start_s) + 1).astype(np.int64)


def misses_per_segment(
    arrival_s: np.ndarray, ttft_s: np.ndarray, slo_ttft_s: float | np.ndarray, segments: int, segment_s: int
):
    """Requests that miss their TTFT deadline (or are never served), counted by arrival segment."""
    missed = ~(np.nan_to_num(ttft_s, nan=np.inf) <= slo_ttft_s)
    index = np.minimum((arrival_s[missed] // segment_s).astype(np.int64), segments - 1)
    return np.bincount(index, minlength=segments)


def _forward_window_sum(values: np.ndarray, window: int) -> np.ndarray:
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    ends = np.minimum(np.arange(len(values)) + window, len(values))
    return cumulative[ends] - cumulative[: len(values)]


def _forward_window_max(values: np.ndarray, window: int) -> np.ndarray:
    padded = np.concatenate([values, np.zeros(window - 1)])
    return np.lib.stride_tricks.sliding_window_view(padded, window).max(axis=1)
