"""The autoscaling decision for one LLMService, as one pure function.

`decide(history, state, config, now)` returns the replica count the engine
Deployment should have. It reads no clock, cluster or Prometheus: the caller
passes the metric samples, the previous `ScalerState` and `now`, and stores the
returned state for the next call. The benchmark in `bench/autoscale` imports
this module as it is, so what is measured there is what the operator runs.

Inputs
------
Each `Sample` aggregates one scrape over the ready replicas: total waiting and
running requests, mean KV-cache use (0..1), mean GPU utilization (percent),
the router's in-flight requests, the prompt tokens prefilled per second over
the last scrape interval, and the ready and starting replica counts. A
signal is None when it is not exported (TGI has no KV-cache metric, Ollama has
no engine metrics at all) or when not every ready replica reported it.

Algorithm
---------
1. **Bounds first.** Below `min_replicas` or above `max_replicas`, go to the
   bound at once, whatever the metrics say.
2. **Fresh data or hold.** Only samples from the last `window_s` seconds
   before the newest one are used. If the newest sample is older than
   `stale_after_s`, or no demand signal is present, the decision holds the
   current count, sets `held` and says why; the scale-down timer restarts so
   that a scale-down always rests on `scale_down_delay_s` of observed data.
   Without the queue signal, scale-up on other signals is allowed but
   scale-down is not: never scale down on missing data. The same holds for
   the prompt-token rate once it has been seen: missing from the newest
   sample, with a gap longer than `stale_after_s`, or not yet covering the
   whole peak window (after an operator restart), it may raise replicas but
   never lowers them. A rate absent from every sample of the window is an
   engine that does not export it (Ollama): the signal is left out.
3. **One recommendation per signal**, HPA-style:
   `ceil(ready * value / target)`, where value is per ready replica (window
   mean). A ratio within `1 +- tolerance` recommends no change. Signals:
   - queue depth: waiting requests per ready replica vs `target_queue_depth`
     (for Ollama, which has no engine metrics, the router's in-flight
     requests are the queue);
   - running requests per ready replica vs `target_running_requests`
     (off by default: in the benchmark a target of 12 rescued one run but doubled
     GPU-hours on another; see bench/README.md);
   - KV-cache use vs `target_kv_cache_usage` (vLLM), and its peak over the
     window (`kv_peak_hold`);
   - the KV-cache load model (`kv_load_model`, vLLM): what a request holds of
     the cache is learned from the engines (time per output token = running
     requests over generated tokens per second, which grows with the cache in
     use), and the replicas that keep the cache under its target at the
     window's peak arrival rate are kept. The cache fills faster than the load
     grows, so a fleet sized for the calm load meets a burst with too little;
     an extrapolation, it may hold replicas but never adds them;
   - GPU utilization vs `target_gpu_utilization`, only when the engine has no
     KV-cache signal (`gpu_util_only_without_kv`): DCGM's GPU_UTIL is the
     share of time any kernel runs, which is near 100 % as soon as a single
     sequence decodes, so for vLLM it only over-provisions (see the bench).
   - prompt-token rate (`prompt_tokens_per_s`, vLLM `vllm:prompt_tokens_total`,
     TGI `tgi_request_input_length_sum`): the highest rate of the samples of
     the last `prompt_rate_peak_window_s` (900 s), times
     `prompt_rate_headroom` (1.1), over `prompt_tokens_per_s_per_replica`
     (20k: an 8B model on one H100). Prefill is what makes a request wait
     for its first token, and bursts of prompt tokens last seconds while a
     replica takes minutes to start, so this signal provisions for the
     recent peak rather than reacting to a queue that is already there: the
     capacity one burst asked for stays for the next. It is the signal that
     makes the benchmark's TTFT objective reachable (bench/README.md).
   The recommendation is the maximum over the signals present.
4. **Starting replicas count as capacity.** The recommendation is an absolute
   count derived from the ready replicas' load, and it is compared with the
   Deployment's replicas, which include the starting ones: a queue that the
   replicas still loading will absorb does not add more.
5. **Scale-up at once**, or once the recommendation has stayed above the
   current count for `scale_up_stabilization_s`, to the lowest
   recommendation seen during that time.
6. **Scale-down after a delay.** Only after the recommendation has stayed
   below the current count for `scale_down_delay_s` without interruption,
   to the highest recommendation seen during that time. Any sample at or
   above the current count restarts the timer, so alternating load keeps the
   higher count instead of oscillating.
7. **Scale to zero** (`min_replicas == 0`): with no waiting, no running and
   no router in-flight requests the recommendation is 0 (whatever the
   prompt-rate peak says), and the delay of
   rule 6 applies. It needs the router signal, since only the router can see
   a request arrive while no replica exists. At zero replicas, the first
   request the router holds scales to one at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise

from llm_operator.autoscale.queueing import mean_wait, replicas_for_mix

# Request-seconds of waiting the queueing model must expect in the window before the measured waits
# correct it (below that, both are noise), and how far they may correct it.
MIN_WAIT_EVIDENCE_S = 5.0
# Samples (15 s apart) the KV load model needs in its window before it speaks: two minutes.
MIN_KV_LOAD_SAMPLES = 8
# The KV load model's search for a replica count stops at this multiple of maxReplicas (no steady state).
KV_LOAD_SEARCH_FACTOR = 10
WAIT_SCALE_BOUNDS = (1.0, 10.0)


@dataclass(frozen=True)
class PolicyConfig:
    """Targets from `spec.autoscaling` and every tunable of the policy, with their defaults."""

    min_replicas: int = 1
    max_replicas: int = 4
    # spec.autoscaling.targetQueueDepth: waiting requests per ready replica.
    target_queue_depth: float = 5.0
    # spec.autoscaling.targetGPUUtilization, percent; None turns the signal off.
    target_gpu_utilization: float | None = 80.0
    # spec.autoscaling.targetKVCacheUsage, 0..1 (vLLM only); None turns the signal off.
    target_kv_cache_usage: float | None = 0.8
    # Running requests per ready replica; None (default) turns the signal off.
    target_running_requests: float | None = None
    # spec.autoscaling.scaleUpStabilizationSeconds
    scale_up_stabilization_s: float = 0.0
    # spec.autoscaling.scaleDownDelaySeconds
    scale_down_delay_s: float = 300.0
    # A value/target ratio within 1 +- tolerance asks for no change (Kubernetes HPA uses 0.1).
    tolerance: float = 0.1
    # Samples averaged per decision, counted back from the newest one.
    window_s: float = 30.0
    # Newest sample older than this: hold (four 15 s scrapes).
    stale_after_s: float = 60.0
    # Ignore GPU utilization when a KV-cache signal is present (see the module docstring).
    gpu_util_only_without_kv: bool = True
    # Prompt (prefill) tokens per second one replica serves within the TTFT objective; None turns the
    # prompt-rate signal off. 20k fits an 8B model in bf16 on one H100 (~8k on an A100); measure yours
    # with `vllm bench serve` at the longest acceptable TTFT.
    prompt_tokens_per_s_per_replica: float | None = 20_000.0
    # The peak prompt-token rate is multiplied by this before dividing by the per-replica rate: room for
    # bursts shorter than one scrape interval (1.0 = provision for the peak 15 s average exactly). The
    # bench: 1.1 meets the SLO where 1.0 does not; 1.2 and more add a replica to smooth traffic.
    prompt_rate_headroom: float = 1.1
    # The prompt-rate signal provisions for the highest rate seen over this trailing window, so
    # capacity raised by one burst stays for the next (a new replica needs a cold start to help).
    # The caller must pass at least this much history. The bench: 600 s misses the SLO on bursty
    # traffic, 1200 s costs 7-10 % more GPU-hours than 900 s.
    prompt_rate_peak_window_s: float = 900.0
    # spec.autoscaling.targetTimeToFirstTokenSeconds: how long a request may wait for its prefill to start
    # (its own prefill comes on top), for `ttft_attainment` of requests; None turns the signal off.
    target_ttft_s: float | None = 2.0
    ttft_attainment: float = 0.99
    # Squared coefficient of variation of prefill times the queueing model assumes: LLM prompt lengths are
    # roughly log-normal, whose SCV exceeds the exponential's 1.
    prefill_scv: float = 2.0
    # Fewer first tokens than this in the peak window: too little to measure prefill time; signal off.
    min_requests_for_capacity: int = 20
    # Scale the model's waits to what the engines measured (see _wait_scale).
    calibrate_waits: bool = True
    # Consecutive samples averaged into one arrival rate (2 x 15 s scrapes).
    demand_smoothing_samples: int = 2
    # Size the KV-cache signal for the peak of the trailing window too, not only the last 30 s.
    kv_peak_hold: bool = True
    # Keep the replicas the KV-cache load model (_kv_load) says the window's peak arrival rate needs; it
    # never adds replicas. The bench: decode-heavy traffic went from 94-96 % to 99.8 % on both GPUs.
    kv_load_model: bool = True
    # KV use must have varied this much over the window for the model to learn how decode slows with it.
    kv_fit_min_spread: float = 0.1


@dataclass(frozen=True)
class Sample:
    """One scrape, aggregated over the ready replicas; None = not available."""

    timestamp: float
    ready_replicas: int
    starting_replicas: int = 0
    waiting_requests: float | None = None  # sum over ready replicas
    running_requests: float | None = None  # sum over ready replicas
    kv_cache_usage: float | None = None  # mean over ready replicas, 0..1
    gpu_utilization: float | None = None  # mean over the replicas' GPUs, percent
    router_in_flight: float | None = None  # requests the router holds or forwards
    # Prompt tokens the engines prefilled per second, summed over the replicas, over the last scrape
    # interval: sum(irate(vllm:prompt_tokens_total[1m])) or TGI's tgi_request_input_length_sum.
    prompt_tokens_per_s: float | None = None
    # The engines' own latency histograms, as rates over the last scrape interval summed over the ready
    # replicas: first tokens per second (vllm:time_to_first_token_seconds_count) and seconds of prefill
    # (vllm:request_prefill_time_seconds_sum) and of queueing (vllm:request_queue_time_seconds_sum) that
    # the requests they cover spent, per second.
    first_tokens_per_s: float | None = None
    prefill_seconds_per_s: float | None = None
    queue_seconds_per_s: float | None = None
    # Output tokens the engines decoded per second, summed over the replicas (vllm:generation_tokens_total).
    generation_tokens_per_s: float | None = None


@dataclass(frozen=True)
class ScalerState:
    """What the policy remembers between calls; start with `ScalerState(replicas=N)`."""

    replicas: int
    last_scale_time: float | None = None
    low_demand_since: float | None = None
    low_demand_peak: int = 0  # highest recommendation while demand stayed below `replicas`
    high_demand_since: float | None = None
    high_demand_floor: int = 0  # lowest recommendation while demand stayed above `replicas`


@dataclass(frozen=True)
class Decision:
    desired_replicas: int
    reason: str  # for status.scaleReason and the scale Event
    state: ScalerState
    scaled: bool = False  # True when desired_replicas differs from the previous count
    held: bool = False  # True when metrics were missing or stale
    hold_reason: str = ""


def history_length(config: PolicyConfig, interval_s: float) -> int:
    """Samples to keep, one per autoscaling interval: the longest window the policy reads (the
    prompt-rate peak), with room to spare, and never fewer than 240."""
    return max(240, int(max(config.window_s, config.prompt_rate_peak_window_s) / interval_s) + 10)


def scaling_condition(current: int, decision: Decision, unavailable: str | None = None) -> tuple[str, str, str]:
    """ScalingActive (status, reason, message): False while the policy holds (Prometheus did not answer,
    or metrics are missing or stale), with why; True with the decision's reason otherwise."""
    if unavailable or decision.held:
        return ("False", "MetricsUnavailable", f"holding {current} replicas: {unavailable or decision.hold_reason}")
    return ("True", "Scaling", decision.reason)


@dataclass(frozen=True)
class _Recommendation:
    replicas: int
    reason: str


def bounded(replicas: int, config: PolicyConfig) -> int:
    """`replicas` within minReplicas..maxReplicas: the one clamp of the autoscaled count (the policy and
    the engine Deployment's builder both use it)."""
    return min(max(replicas, config.min_replicas), config.max_replicas)


def decide(history: Sequence[Sample], state: ScalerState, config: PolicyConfig, now: float) -> Decision:
    """Desired replicas from the recent samples; pure and deterministic."""
    current = state.replicas
    if bounded(current, config) != current:
        bounded_count = bounded(current, config)
        reason = f"replicas {current} outside bounds {config.min_replicas}..{config.max_replicas}"
        return _scale(state, bounded_count, reason, now)

    window = _fresh_window(history, config)
    if not window:
        return _hold(state, "no metric samples")
    newest = window[-1]
    age = now - newest.timestamp
    if age > config.stale_after_s:
        return _hold(state, f"metrics stale: newest sample {age:.0f} s old > {config.stale_after_s:.0f} s")

    if current == 0:
        return _from_zero(window, state, config, now)
    if newest.ready_replicas == 0:
        return _unchanged(state, f"waiting for {newest.starting_replicas} starting replicas to be ready")

    rate = _prompt_rate(history, newest, config)
    demand = _first_token_demand(history, newest, config)
    recommendation = _recommend(window, rate, demand, _kv_peak(history, newest, config), config,
                                _kv_load(history, newest, config), current)
    if recommendation is None:
        return _hold(state, "no demand signal in the metrics (queue, KV cache, GPU utilization)")
    if recommendation.replicas < current and _queue_signal_missing(window):
        return _hold(state, "queue metric missing: not scaling down on partial data")
    if recommendation.replicas <= current and _queue_signal_missing([newest]):
        # A ready replica stopped reporting (NaN, a target Prometheus cannot scrape, no series): the window's
        # older samples still give a mean, but the count is held, and ScalingActive=False says so.
        return _hold(state, "a ready replica reports no queue metric now: not deciding on partial data")
    if recommendation.replicas < current and rate is not None and rate.gap:
        return _hold(state, f"prompt-token rate {rate.gap}: not scaling down on partial data")
    if recommendation.replicas < current and demand is not None and demand.gap:
        return _hold(state, f"first-token latency history {demand.gap}: not scaling down on partial data")
    if recommendation.replicas < current and newest.starting_replicas:
        # The replicas a scale-up asked for are not serving yet: the load they are for is not measured.
        return _unchanged(_reset_timers(state), f"{recommendation.reason}; waiting for "
                          f"{newest.starting_replicas} starting replicas before scaling down")
    return _apply_timers(state, recommendation, config, now)


def _fresh_window(history: Sequence[Sample], config: PolicyConfig) -> list[Sample]:
    if not history:
        return []
    ordered = sorted(history, key=lambda sample: sample.timestamp)
    start = ordered[-1].timestamp - config.window_s
    return [sample for sample in ordered if sample.timestamp >= start]


def _mean(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


def _queue_total(window: Sequence[Sample]) -> float | None:
    """Waiting requests; the router's in-flight requests when the engine exports no queue (Ollama)."""
    waiting = _mean([sample.waiting_requests for sample in window])
    return waiting if waiting is not None else _mean([sample.router_in_flight for sample in window])


def _queue_signal_missing(window: Sequence[Sample]) -> bool:
    return _queue_total(window) is None


@dataclass(frozen=True)
class _PromptRate:
    peak: float  # highest rate over the trailing peak window
    gap: str  # why the window is incomplete ("" when complete)


def _prompt_rate(history: Sequence[Sample], newest: Sample, config: PolicyConfig) -> _PromptRate | None:
    """The peak prompt-token rate of the trailing window; None when the signal is off or never exported.

    A rate that is present in the window but missing from the newest sample, with a gap longer than
    `stale_after_s`, or not yet covering the whole window (after a restart) is incomplete: it may
    still raise replicas but never lowers them.
    """
    if not config.prompt_tokens_per_s_per_replica:
        return None
    start = newest.timestamp - config.prompt_rate_peak_window_s
    times = sorted(
        (sample.timestamp, sample.prompt_tokens_per_s)
        for sample in history
        if start <= sample.timestamp <= newest.timestamp and sample.prompt_tokens_per_s is not None
    )
    if not times:
        return None
    gap = ""
    if newest.prompt_tokens_per_s is None:
        gap = "missing from the newest sample"
    elif times[0][0] > start + config.stale_after_s:
        gap = f"known for {times[-1][0] - times[0][0]:.0f} of {config.prompt_rate_peak_window_s:.0f} s"
    elif any(later[0] - earlier[0] > config.stale_after_s for earlier, later in pairwise(times)):
        gap = f"has a gap longer than {config.stale_after_s:.0f} s"
    return _PromptRate(peak=max(rate for _, rate in times), gap=gap)


@dataclass(frozen=True)
class _Demand:
    """What the engines' latency histograms say about the fleet the TTFT target needs."""

    replicas: int  # the most any sample of the peak window needed
    arrival_rate: float  # requests/s of that sample, with its backlog
    mean_prefill_s: float  # learned from the whole window
    wait_scale: float  # measured waits over the model's (1: no evidence)
    gap: str  # why the window is incomplete ("" when complete)


def _first_token_demand(history: Sequence[Sample], newest: Sample, config: PolicyConfig) -> _Demand | None:
    """Replicas for the TTFT target, sized from the engines' own numbers over the trailing peak window.

    The mean prefill time is measured (prefill seconds per first token, summed over the window), so the
    capacity of a replica is learned from the model, GPU and traffic as they are, not configured. Each
    sample's demand is its first tokens per second plus its backlog (the waiting requests must start
    within the target); the M/G/c model (`queueing.replicas_for_wait`) turns it into replicas, and the
    highest of the window wins, so the capacity one burst needed is there for the next.
    """
    if not config.target_ttft_s:
        return None
    start = newest.timestamp - config.prompt_rate_peak_window_s
    usable = sorted(
        (sample for sample in history if start <= sample.timestamp <= newest.timestamp
         and sample.first_tokens_per_s is not None and sample.prefill_seconds_per_s is not None),
        key=lambda sample: sample.timestamp,
    )
    if not usable:
        return None
    intervals = [later.timestamp - earlier.timestamp for earlier, later in pairwise(usable)] or [0.0]
    interval = sorted(intervals)[len(intervals) // 2]
    first_tokens = sum(sample.first_tokens_per_s or 0.0 for sample in usable)
    if first_tokens * max(interval, 1.0) < config.min_requests_for_capacity:
        return None
    mean_prefill = sum(sample.prefill_seconds_per_s or 0.0 for sample in usable) / first_tokens
    if mean_prefill <= 0:
        return None
    tail = 1.0 - config.ttft_attainment
    scale = _wait_scale(usable, mean_prefill, max(interval, 1.0), config)
    arrivals = _arrival_rates(usable, config.demand_smoothing_samples)
    replicas = replicas_for_mix(arrivals, mean_prefill, config.prefill_scv, config.target_ttft_s, tail, scale)
    best = (replicas, max(arrivals))
    gap = ""
    if newest.first_tokens_per_s is None:
        gap = "missing from the newest sample"
    elif usable[0].timestamp > start + config.stale_after_s:
        gap = f"known for {usable[-1].timestamp - usable[0].timestamp:.0f} of {config.prompt_rate_peak_window_s:.0f} s"
    elif any(later.timestamp - earlier.timestamp > config.stale_after_s for earlier, later in pairwise(usable)):
        gap = f"has a gap longer than {config.stale_after_s:.0f} s"
    return _Demand(replicas=best[0], arrival_rate=best[1], mean_prefill_s=mean_prefill, wait_scale=scale, gap=gap)


def _kv_peak(history: Sequence[Sample], newest: Sample, config: PolicyConfig) -> float | None:
    """The most KV cache in use over the trailing peak window, in replicas' worth (ready x mean use): the
    decode load a burst brought, kept through the window as the TTFT demand is."""
    if not config.kv_peak_hold or not config.target_kv_cache_usage:
        return None
    start = newest.timestamp - config.prompt_rate_peak_window_s
    used = [sample.ready_replicas * sample.kv_cache_usage for sample in history
            if start <= sample.timestamp <= newest.timestamp and sample.kv_cache_usage is not None]
    return max(used) if used else None


@dataclass(frozen=True)
class _KvLoad:
    replicas: int
    peak_arrivals: float  # requests/s
    tpot_floor: float  # seconds per output token with an empty cache
    tpot_slope: float  # its growth per unit of KV share in use
    holding: float  # KV share per (request/s per replica) per second of TPOT


def _kv_load(history: Sequence[Sample], newest: Sample, config: PolicyConfig) -> _KvLoad | None:
    """Replicas that keep the KV cache within its target at the window's peak arrival rate.

    By Little's law a replica's KV share in use is its arrival rate times what a request holds over its
    life, and its life is its output tokens times the time per output token (TPOT): u = lam * k * tpot. The
    engines say TPOT (running requests over generated tokens per second), and a decode step reads the whole
    resident cache, so tpot = a + b * u, fitted over the window's samples; k is the window's sum of u over
    its sum of lam * tpot, so that the cache's lag behind the arrivals washes out. Then
    u = lam * k * a / (1 - lam * k * b): the cache fills faster than the load grows, and has no steady state
    past the point where the replicas cannot keep up. With too little spread in u to learn b, b is 0."""
    if not config.kv_load_model or not config.target_kv_cache_usage:
        return None
    start = newest.timestamp - config.prompt_rate_peak_window_s
    samples = sorted((sample for sample in history if start <= sample.timestamp <= newest.timestamp
                      and sample.kv_cache_usage is not None and sample.first_tokens_per_s is not None
                      and sample.ready_replicas), key=lambda sample: sample.timestamp)
    if len(samples) < MIN_KV_LOAD_SAMPLES:
        return None
    arrivals = _arrival_rates(samples, config.demand_smoothing_samples)
    points = [(sample.kv_cache_usage or 0.0, (sample.running_requests or 0.0) / sample.generation_tokens_per_s,
               arrival / sample.ready_replicas)
              for sample, arrival in zip(samples, arrivals, strict=True)
              if sample.generation_tokens_per_s and sample.running_requests]
    if len(points) < MIN_KV_LOAD_SAMPLES:
        return None
    floor, slope = _line_fit([(u, tpot) for u, tpot, _ in points], config.kv_fit_min_spread)
    denominator = sum(lam * tpot for _, tpot, lam in points)
    if floor <= 0 or denominator <= 0:
        return None
    holding = sum(u for u, _, _ in points) / denominator
    peak = max(arrivals)
    replicas = 1
    while replicas < KV_LOAD_SEARCH_FACTOR * config.max_replicas:
        load = peak / replicas * holding
        if load * slope < 1 and load * floor / (1 - load * slope) <= config.target_kv_cache_usage:
            break
        replicas += 1
    return _KvLoad(replicas, peak, floor, slope, holding)


def _line_fit(points: Sequence[tuple[float, float]], min_spread: float) -> tuple[float, float]:
    """Least squares y = a + b * x with b at least 0, and 0 when the xs vary by less than `min_spread`."""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = 0.0
    if max(xs) - min(xs) >= min_spread and spread > 0:
        slope = max(0.0, sum((x - mean_x) * (y - mean_y) for x, y in points) / spread)
    return mean_y - slope * mean_x, slope


def _arrival_rates(samples: Sequence[Sample], smoothing: int) -> list[float]:
    """Requests arriving per second at each sample: the first tokens served plus the growth of the queue
    (what arrived and was not served), averaged over `smoothing` consecutive samples so that the Poisson
    noise of one scrape interval does not read as a burst."""
    raw = []
    for previous, sample in zip([None, *samples[:-1]], samples, strict=True):
        growth = 0.0
        if previous is not None and sample.timestamp > previous.timestamp:
            growth = max(0.0, ((sample.waiting_requests or 0.0) - (previous.waiting_requests or 0.0))
                         / (sample.timestamp - previous.timestamp))
        raw.append((sample.first_tokens_per_s or 0.0) + growth)
    width = max(1, smoothing)
    return [sum(raw[max(0, i - width + 1):i + 1]) / len(raw[max(0, i - width + 1):i + 1]) for i in range(len(raw))]


def _wait_scale(samples: Sequence[Sample], mean_prefill: float, interval: float, config: PolicyConfig) -> float:
    """How the waits the engines measured compare with what the queueing model predicts for the same ready
    replicas and load, over the window (queue seconds measured / predicted), used once the model expected
    at least MIN_WAIT_EVIDENCE_S of waiting (less is noise), within WAIT_SCALE_BOUNDS.

    Only upwards: waits longer than the model's raise the replicas; shorter ones (the router doing better
    than chance, which it does in calm traffic) are not trusted to lower them, since the benchmark showed
    that calm minutes are no guide to the next burst: with the correction downwards too, long-context
    traffic fell to 97% (bench/README.md)."""
    if not config.calibrate_waits:
        return 1.0
    measured = predicted = 0.0
    for sample in samples:
        if sample.queue_seconds_per_s is None or not sample.ready_replicas or not sample.first_tokens_per_s:
            continue
        expected = mean_wait(sample.ready_replicas, sample.first_tokens_per_s, mean_prefill, config.prefill_scv)
        if math.isfinite(expected):
            measured += sample.queue_seconds_per_s * interval
            predicted += expected * sample.first_tokens_per_s * interval
    if predicted < MIN_WAIT_EVIDENCE_S:
        return 1.0
    low, high = WAIT_SCALE_BOUNDS
    return min(max(measured / predicted, low), high)


def _ratio_replicas(ready: int, value: float, target: float, tolerance: float) -> int:
    ratio = value / target
    if abs(ratio - 1.0) <= tolerance:
        return ready
    return math.ceil(ready * ratio - 1e-9)


def _signal_recommendations(
    window: Sequence[Sample], rate: _PromptRate | None, demand: _Demand | None, kv_peak: float | None,
    config: PolicyConfig, kv_load: _KvLoad | None = None, current: int = 0,
) -> list[_Recommendation]:
    ready = window[-1].ready_replicas
    found: list[_Recommendation] = []
    tol = config.tolerance

    if demand is not None:
        found.append(
            _Recommendation(
                demand.replicas,
                f"time to first token: {demand.arrival_rate:.2f} requests/s at peak x {demand.mean_prefill_s:.3g} s "
                f"prefill (measured; waits x{demand.wait_scale:.2g} of the model's) need {demand.replicas} "
                f"replicas to start "
                f"{config.ttft_attainment:.0%} within {config.target_ttft_s:g} s",
            )
        )

    if rate is not None and config.prompt_tokens_per_s_per_replica:
        per_replica = config.prompt_tokens_per_s_per_replica / config.prompt_rate_headroom
        replicas = _ratio_replicas(ready, rate.peak / ready, per_replica, tol)
        found.append(
            _Recommendation(
                replicas,
                f"peak prompt rate {rate.peak:.0f} tokens/s over {config.prompt_rate_peak_window_s:.0f} s"
                f" x headroom {config.prompt_rate_headroom:g} vs {config.prompt_tokens_per_s_per_replica:g}"
                f" per replica",
            )
        )

    queue = _queue_total(window)
    if queue is not None:
        replicas = _ratio_replicas(ready, queue / ready, config.target_queue_depth, tol)
        relation = ">" if replicas > ready else "<=" if replicas == ready else "<"
        found.append(
            _Recommendation(
                replicas, f"queue depth {queue:.1f} {relation} target {config.target_queue_depth:g} x {ready} replicas"
            )
        )

    running = _mean([sample.running_requests for sample in window])
    if running is not None and config.target_running_requests:
        replicas = _ratio_replicas(ready, running / ready, config.target_running_requests, tol)
        found.append(
            _Recommendation(
                replicas,
                f"running requests {running:.1f} vs target {config.target_running_requests:g} x {ready} replicas",
            )
        )

    kv = _mean([sample.kv_cache_usage for sample in window])
    if kv is not None and config.target_kv_cache_usage:
        replicas = _ratio_replicas(ready, kv, config.target_kv_cache_usage, tol)
        found.append(_Recommendation(replicas, f"kv-cache usage {kv:.2f} vs target {config.target_kv_cache_usage:g}"))
    if kv_peak is not None and config.target_kv_cache_usage:
        replicas = math.ceil(kv_peak / config.target_kv_cache_usage - 1e-9)
        found.append(_Recommendation(
            replicas, f"kv-cache peak {kv_peak:.2f} replicas' worth over {config.prompt_rate_peak_window_s:.0f} s "
            f"vs target {config.target_kv_cache_usage:g}"))

    gpu = _mean([sample.gpu_utilization for sample in window])
    gpu_allowed = kv is None or not config.gpu_util_only_without_kv
    if gpu is not None and config.target_gpu_utilization and gpu_allowed:
        replicas = _ratio_replicas(ready, gpu, config.target_gpu_utilization, tol)
        found.append(
            _Recommendation(replicas, f"gpu utilization {gpu:.0f}% vs target {config.target_gpu_utilization:g}%")
        )
    if kv_load is not None:
        # An extrapolation from the window's samples: trusted to keep replicas, not to add them.
        found.append(_Recommendation(
            min(kv_load.replicas, current), f"kv-cache load: {kv_load.peak_arrivals:.2f} requests/s at peak, TPOT "
            f"{kv_load.tpot_floor * 1000:.3g} ms + {kv_load.tpot_slope * 1000:.3g} ms x KV use, holding "
            f"{kv_load.holding:.3g}: need {kv_load.replicas} replicas within {config.target_kv_cache_usage:g}"))
    return found


def _no_traffic(window: Sequence[Sample]) -> bool:
    """True when no sample shows a waiting, running or router in-flight request; needs the router signal."""
    if any(sample.router_in_flight is None for sample in window):
        return False
    return all(
        not sample.waiting_requests and not sample.running_requests and not sample.router_in_flight for sample in window
    )


def _recommend(
    window: Sequence[Sample], rate: _PromptRate | None, demand: _Demand | None, kv_peak: float | None,
    config: PolicyConfig, kv_load: _KvLoad | None = None, current: int = 0,
) -> _Recommendation | None:
    found = _signal_recommendations(window, rate, demand, kv_peak, config, kv_load, current)
    if not found:
        return None
    if config.min_replicas == 0 and _no_traffic(window):
        # Idle: the trailing prompt-rate peak does not keep replicas that serve nobody.
        return _Recommendation(0, "no traffic: no waiting, running or router in-flight requests")
    best = max(found, key=lambda recommendation: recommendation.replicas)
    replicas = bounded(max(best.replicas, 1), config)
    if replicas == config.max_replicas and best.replicas > config.max_replicas:
        return _Recommendation(replicas, f"{best.reason} (capped at maxReplicas {config.max_replicas})")
    return _Recommendation(replicas, best.reason)


def _from_zero(window: Sequence[Sample], state: ScalerState, config: PolicyConfig, now: float) -> Decision:
    in_flight = window[-1].router_in_flight
    if in_flight is None:
        return _hold(state, "router metric missing: cannot see requests while scaled to zero")
    if in_flight > 0:
        return _scale(state, max(1, config.min_replicas), f"router holds {in_flight:g} requests: scale from zero", now)
    return _unchanged(state, "scaled to zero: no requests at the router")


def _apply_timers(state: ScalerState, rec: _Recommendation, config: PolicyConfig, now: float) -> Decision:
    current = state.replicas
    if rec.replicas > current:
        since = state.high_demand_since if state.high_demand_since is not None else now
        floor = min(state.high_demand_floor, rec.replicas) if state.high_demand_since is not None else rec.replicas
        if now - since >= config.scale_up_stabilization_s:
            return _scale(state, floor, rec.reason, now)
        waiting = replace(
            state, high_demand_since=since, high_demand_floor=floor, low_demand_since=None, low_demand_peak=0
        )
        return _unchanged(
            waiting, f"{rec.reason}; scale-up stabilizing {now - since:.0f}/{config.scale_up_stabilization_s:.0f} s"
        )
    if rec.replicas < current:
        since = state.low_demand_since if state.low_demand_since is not None else now
        peak = max(state.low_demand_peak, rec.replicas) if state.low_demand_since is not None else rec.replicas
        if now - since >= config.scale_down_delay_s:
            return _scale(state, peak, f"{rec.reason}; demand below {current} replicas for {now - since:.0f} s", now)
        waiting = replace(
            state, low_demand_since=since, low_demand_peak=peak, high_demand_since=None, high_demand_floor=0
        )
        return _unchanged(
            waiting,
            f"{rec.reason}; demand below {current} replicas for {now - since:.0f}/{config.scale_down_delay_s:.0f} s",
        )
    return _unchanged(_reset_timers(state), rec.reason)


def _reset_timers(state: ScalerState) -> ScalerState:
    return replace(state, low_demand_since=None, low_demand_peak=0, high_demand_since=None, high_demand_floor=0)


def _scale(state: ScalerState, replicas: int, reason: str, now: float) -> Decision:
    if replicas == state.replicas:
        return _unchanged(_reset_timers(state), reason)
    new_state = ScalerState(replicas=replicas, last_scale_time=now)
    return Decision(desired_replicas=replicas, reason=reason, state=new_state, scaled=True)


def _unchanged(state: ScalerState, reason: str) -> Decision:
    return Decision(desired_replicas=state.replicas, reason=reason, state=state)


def _hold(state: ScalerState, why: str) -> Decision:
    held_state = _reset_timers(state)
    return Decision(
        desired_replicas=state.replicas,
        reason=f"holding {state.replicas} replicas: {why}",
        state=held_state,
        held=True,
        hold_reason=why,
    )
