"""Every rule of llm_operator.autoscale.policy, one test (or a few) each."""

from __future__ import annotations

from dataclasses import replace

from llm_operator.autoscale.policy import (
    Decision,
    PolicyConfig,
    Sample,
    ScalerState,
    decide,
    history_length,
    scaling_condition,
)

CONFIG = PolicyConfig(
    min_replicas=1,
    max_replicas=6,
    target_queue_depth=5,
    target_kv_cache_usage=0.8,
    target_gpu_utilization=80,
    scale_down_delay_s=300,
    window_s=30,
    stale_after_s=60,
)


def sample(
    t: float,
    ready: int = 2,
    starting: int = 0,
    waiting: float | None = 0.0,
    running: float | None = 4.0,
    kv: float | None = 0.3,
    gpu: float | None = 50.0,
    router: float | None = None,
) -> Sample:
    return Sample(
        timestamp=t,
        ready_replicas=ready,
        starting_replicas=starting,
        waiting_requests=waiting,
        running_requests=running,
        kv_cache_usage=kv,
        gpu_utilization=gpu,
        router_in_flight=router,
    )


def run(samples_per_step: list[Sample], replicas: int, config: PolicyConfig = CONFIG) -> list[Decision]:
    """Feed one sample per call, as the operator's timer does, carrying the state along."""
    state = ScalerState(replicas=replicas)
    history: list[Sample] = []
    decisions = []
    for current in samples_per_step:
        history.append(current)
        decision = decide(history, state, config, now=current.timestamp)
        decisions.append(decision)
        state = decision.state
    return decisions


# --- signals ---------------------------------------------------------------------------------------


def test_queue_depth_scales_up_with_the_hpa_ratio_and_says_why():
    decision = decide([sample(0, ready=2, waiting=14.2)], ScalerState(replicas=2), CONFIG, now=0)
    assert decision.desired_replicas == 3  # ceil(2 x (7.1 / 5))
    assert decision.scaled
    assert decision.reason == "queue depth 14.2 > target 5 x 2 replicas"


def test_queue_depth_within_tolerance_keeps_the_count():
    decision = decide([sample(0, ready=2, waiting=10.8)], ScalerState(replicas=2), CONFIG, now=0)
    assert decision.desired_replicas == 2  # 5.4 per replica is within 10 % of 5
    assert not decision.scaled


def test_kv_cache_pressure_alone_scales_up():
    decision = decide([sample(0, ready=2, waiting=0, kv=0.98)], ScalerState(replicas=2), CONFIG, now=0)
    assert decision.desired_replicas == 3  # ceil(2 x 0.98 / 0.8)
    assert "kv-cache usage 0.98" in decision.reason


def test_gpu_utilization_alone_scales_up_an_engine_without_kv_metric():
    tgi = sample(0, ready=2, waiting=0, kv=None, gpu=100.0)
    decision = decide([tgi], ScalerState(replicas=2), CONFIG, now=0)
    assert decision.desired_replicas == 3  # ceil(2 x 100 / 80)
    assert "gpu utilization 100%" in decision.reason


def test_gpu_utilization_is_ignored_when_kv_cache_is_known_unless_configured():
    vllm = sample(0, ready=2, waiting=0, kv=0.3, gpu=100.0)
    assert decide([vllm], ScalerState(replicas=2), CONFIG, now=0).desired_replicas == 2
    with_gpu = replace(CONFIG, gpu_util_only_without_kv=False)
    assert decide([vllm], ScalerState(replicas=2), with_gpu, now=0).desired_replicas == 3


def test_running_requests_signal_when_configured():
    config = replace(CONFIG, target_running_requests=16)
    decision = decide([sample(0, ready=2, waiting=0, running=64)], ScalerState(replicas=2), config, now=0)
    assert decision.desired_replicas == 4
    assert "running requests 64.0" in decision.reason


def test_the_highest_signal_wins():
    busy = sample(0, ready=2, waiting=30, kv=0.98)  # queue asks 6, KV asks 3
    decision = decide([busy], ScalerState(replicas=2), CONFIG, now=0)
    assert decision.desired_replicas == 6
    assert decision.reason.startswith("queue depth 30.0")


def test_router_in_flight_is_the_queue_for_ollama():
    ollama = sample(0, ready=1, waiting=None, running=None, kv=None, gpu=None, router=12)
    decision = decide([ollama], ScalerState(replicas=1), CONFIG, now=0)
    assert decision.desired_replicas == 3  # ceil(12 / 5)


def test_window_averages_recent_samples_only():
    history = [sample(0, waiting=100), sample(40, waiting=20), sample(55, waiting=0)]
    decision = decide(history, ScalerState(replicas=2), CONFIG, now=55)
    assert decision.desired_replicas == 2  # mean of the last 30 s = 10 = 5 x 2; t=0 is outside
    assert "queue depth 10.0" in decision.reason


# --- bounds ----------------------------------------------------------------------------------------


def test_scale_up_is_capped_at_max_replicas():
    decision = decide([sample(0, ready=2, waiting=500)], ScalerState(replicas=2), CONFIG, now=0)
    assert decision.desired_replicas == 6
    assert "capped at maxReplicas 6" in decision.reason


def test_out_of_bounds_count_moves_to_the_bound_even_without_metrics():
    assert decide([], ScalerState(replicas=9), CONFIG, now=0).desired_replicas == 6
    assert decide([], ScalerState(replicas=0), CONFIG, now=0).desired_replicas == 1


def test_scale_down_never_goes_below_min_replicas():
    quiet = [sample(t, ready=3, waiting=0, running=0, kv=0.0) for t in range(0, 400, 15)]
    decisions = run(quiet, replicas=3)
    assert decisions[-1].desired_replicas == 1


# --- timing: scale-up at once, scale-down after the delay ------------------------------------------


def test_scale_down_waits_for_the_delay_of_continuously_lower_demand():
    quiet = [sample(t, ready=4, waiting=0, running=2, kv=0.1) for t in range(0, 330, 15)]
    decisions = run(quiet, replicas=4)
    before = [d for d, s in zip(decisions, quiet, strict=True) if s.timestamp < 300]
    assert all(d.desired_replicas == 4 for d in before)
    assert "demand below 4 replicas" in before[-1].reason
    scaled = next(d for d in decisions if d.scaled)
    assert scaled.state.last_scale_time == 300
    assert scaled.desired_replicas == 1


def test_scale_down_goes_to_the_highest_need_seen_during_the_delay():
    # need 3 once, then 2, then nothing: after 300 s of less than 4, go to 3, not 1.
    demand = {0: 14.0, 15: 9.0}
    samples = [sample(t, ready=4, waiting=demand.get(t, 0.0), kv=0.1) for t in range(0, 330, 15)]
    decisions = run(samples, replicas=4)
    assert next(d for d in decisions if d.scaled).desired_replicas == 3


def test_scale_up_stabilization_uses_the_lowest_need_of_the_period():
    config = replace(CONFIG, scale_up_stabilization_s=30, window_s=0)
    samples = [sample(0, waiting=30), sample(15, waiting=16), sample(30, waiting=30)]
    decisions = run(samples, replicas=2, config=config)
    assert [d.desired_replicas for d in decisions] == [2, 2, 4]  # min(6, 4, 6) after 30 s
    assert "stabilizing" in decisions[0].reason


def test_flapping_load_does_not_oscillate():
    # Busy and idle scrapes alternate for an hour: one scale-up, then the count stays.
    samples = [sample(t, ready=2, waiting=20.0 if (t // 15) % 2 else 0.0, kv=0.2) for t in range(0, 3600, 15)]
    for config in (CONFIG, replace(CONFIG, window_s=0)):  # with and without averaging
        decisions = run(samples, replicas=2, config=config)
        assert sum(d.scaled for d in decisions) == 1
        assert decisions[-1].desired_replicas == max(d.desired_replicas for d in decisions) > 2


def test_lower_demand_timer_restarts_when_demand_returns():
    demand = [0.0] * 19 + [20.0] + [0.0] * 19  # 285 s low, one busy scrape, 285 s low
    samples = [sample(i * 15, ready=4, waiting=w, kv=0.1) for i, w in enumerate(demand)]
    decisions = run(samples, replicas=4, config=replace(CONFIG, window_s=0))
    assert all(d.desired_replicas == 4 for d in decisions)


# --- starting replicas -----------------------------------------------------------------------------


def test_starting_replicas_absorb_the_queue():
    # 1 ready with 8 waiting asks for 2; the Deployment has 2 already (one is starting).
    loading = sample(0, ready=1, starting=1, waiting=8, kv=0.2)
    decision = decide([loading], ScalerState(replicas=2), CONFIG, now=0)
    assert decision.desired_replicas == 2
    assert not decision.scaled


def test_scale_up_beyond_what_starting_replicas_cover():
    loading = sample(0, ready=1, starting=1, waiting=14, kv=0.2)
    assert decide([loading], ScalerState(replicas=2), CONFIG, now=0).desired_replicas == 3


def test_no_decision_while_every_replica_is_still_starting():
    decision = decide(
        [sample(0, ready=0, starting=2, waiting=None, running=None, kv=None, gpu=None, router=9)],
        ScalerState(replicas=2),
        CONFIG,
        now=0,
    )
    assert decision.desired_replicas == 2
    assert "starting" in decision.reason


# --- missing and stale metrics ---------------------------------------------------------------------


def test_stale_metrics_hold_and_say_why():
    old = sample(0, ready=3, waiting=0, running=0, kv=0.0)
    decision = decide([old], ScalerState(replicas=3), CONFIG, now=120)
    assert decision.held and decision.desired_replicas == 3
    assert decision.hold_reason == "metrics stale: newest sample 120 s old > 60 s"
    assert decision.reason.startswith("holding 3 replicas")


def test_no_samples_hold():
    decision = decide([], ScalerState(replicas=2), CONFIG, now=0)
    assert decision.held and decision.hold_reason == "no metric samples"


def test_no_signal_at_all_holds():
    blind = sample(0, waiting=None, running=None, kv=None, gpu=None)
    assert decide([blind], ScalerState(replicas=2), CONFIG, now=0).held


def test_never_scales_down_without_the_queue_metric_but_may_scale_up():
    quiet_without_queue = sample(0, ready=4, waiting=None, kv=0.1)
    down = decide([quiet_without_queue], ScalerState(replicas=4), CONFIG, now=0)
    assert down.held and down.desired_replicas == 4 and "queue metric missing" in down.hold_reason
    pressure_without_queue = sample(0, ready=2, waiting=None, kv=0.98)
    assert decide([pressure_without_queue], ScalerState(replicas=2), CONFIG, now=0).desired_replicas == 3


def test_a_gap_in_metrics_restarts_the_scale_down_delay():
    quiet = [sample(t, ready=4, waiting=0, kv=0.1) for t in range(0, 180, 15)]
    state = run(quiet, replicas=4)[-1].state
    assert state.low_demand_since == 0
    held = decide(quiet, state, CONFIG, now=300)  # newest sample 135 s old
    assert held.held and held.state.low_demand_since is None
    fresh = [sample(t, ready=4, waiting=0, kv=0.1) for t in range(300, 330, 15)]
    assert decide(fresh, held.state, CONFIG, now=315).desired_replicas == 4


# --- scale to zero ---------------------------------------------------------------------------------

ZERO = replace(CONFIG, min_replicas=0)


def test_scales_to_zero_after_the_delay_without_traffic():
    idle = [sample(t, ready=1, waiting=0, running=0, kv=0.0, router=0) for t in range(0, 330, 15)]
    decisions = run(idle, replicas=1, config=ZERO)
    assert all(d.desired_replicas == 1 for d in decisions if d.state.last_scale_time is None)
    scaled = next(d for d in decisions if d.scaled)
    assert scaled.desired_replicas == 0 and scaled.state.last_scale_time == 300
    assert "no traffic" in scaled.reason


def test_does_not_scale_to_zero_while_a_request_runs():
    busy = [sample(t, ready=1, waiting=0, running=1 if t == 150 else 0, kv=0.0, router=0) for t in range(0, 330, 15)]
    assert all(d.desired_replicas == 1 for d in run(busy, replicas=1, config=ZERO))


def test_does_not_scale_to_zero_without_the_router_signal():
    idle = [sample(t, ready=1, waiting=0, running=0, kv=0.0, router=None) for t in range(0, 330, 15)]
    assert all(d.desired_replicas == 1 for d in run(idle, replicas=1, config=ZERO))


def test_scales_from_zero_when_the_router_sees_a_request():
    empty = Sample(timestamp=0, ready_replicas=0, router_in_flight=0)
    assert decide([empty], ScalerState(replicas=0), ZERO, now=0).desired_replicas == 0
    request = Sample(timestamp=15, ready_replicas=0, router_in_flight=1)
    decision = decide([empty, request], ScalerState(replicas=0), ZERO, now=15)
    assert decision.desired_replicas == 1 and decision.scaled
    assert "scale from zero" in decision.reason


def test_holds_at_zero_without_the_router_signal():
    blind = Sample(timestamp=0, ready_replicas=0)
    decision = decide([blind], ScalerState(replicas=0), ZERO, now=0)
    assert decision.held and decision.desired_replicas == 0


# --- purity ----------------------------------------------------------------------------------------


def test_same_inputs_same_decision():
    history = [sample(t, waiting=12.0 + t / 15) for t in range(0, 60, 15)]
    first = decide(history, ScalerState(replicas=2), CONFIG, now=45)
    assert first == decide(list(reversed(history)), ScalerState(replicas=2), CONFIG, now=45)


# --- prompt-token rate ------------------------------------------------------------------------------

# 20k prompt tokens/s per replica with headroom 1.0 (round numbers), peak over the last 600 s.
RATE = replace(CONFIG, prompt_tokens_per_s_per_replica=20_000, prompt_rate_headroom=1.0, prompt_rate_peak_window_s=600)


def rated(t: float, rate: float | None, ready: int = 2, starting: int = 0) -> Sample:
    """A quiet scrape (no queue, little KV use) with the given prompt-token rate."""
    return replace(sample(t, ready=ready, starting=starting, waiting=0, kv=0.1), prompt_tokens_per_s=rate)


def test_a_prompt_token_burst_raises_replicas_at_once():
    history = [rated(t, 5_000) for t in range(0, 600, 15)] + [rated(600, 70_000)]
    decision = decide(history, ScalerState(replicas=2), RATE, now=600)
    assert decision.scaled and decision.desired_replicas == 4  # 70k / 20k = 3.5
    assert "peak prompt rate 70000 tokens/s" in decision.reason


def test_headroom_multiplies_the_peak_rate():
    history = [rated(t, 30_000) for t in range(0, 615, 15)]
    assert decide(history, ScalerState(replicas=2), RATE, now=600).desired_replicas == 2  # 1.5 replicas
    roomy = replace(RATE, prompt_rate_headroom=1.5)
    assert decide(history, ScalerState(replicas=2), roomy, now=600).desired_replicas == 3  # 2.25 replicas


def test_the_trailing_peak_keeps_replicas_through_the_window():
    # A 70k burst at t=600 asks for 4; then the rate falls to 5k (1 replica) with no queue at all.
    samples = [rated(t, 5_000, ready=4) for t in range(0, 600, 15)] + [rated(600, 70_000, ready=4)]
    samples += [rated(t, 5_000, ready=4) for t in range(615, 1800, 15)]
    decisions = run(samples, replicas=4, config=RATE)
    first_down = next(d for d in decisions if d.scaled)
    # The peak leaves the 600 s window after t=1200; then the 300 s scale-down delay runs.
    assert first_down.state.last_scale_time == 1215 + 300
    assert all(d.desired_replicas == 4 for d in decisions if d.state.last_scale_time is None)


def test_never_scales_down_on_a_missing_rate():
    # Complete from t=540, the 300 s delay would end at 840, but the rate is gone from t=600 on.
    known = [rated(t, 5_000, ready=4) for t in range(0, 600, 15)]
    missing = known + [rated(t, None, ready=4) for t in range(600, 1200, 15)]
    decisions = run(missing, replicas=4, config=RATE)
    assert all(d.desired_replicas == 4 for d in decisions)
    assert all(d.held and "prompt-token rate missing from the newest sample" in d.hold_reason for d in decisions[40:])
    # A whole peak window without any rate is an engine that does not export it: the queue rules as before.
    later = run(missing + [rated(t, None, ready=4) for t in range(1200, 1530, 15)], replicas=4, config=RATE)
    assert [d.state.last_scale_time for d in later if d.scaled] == [1500]


def test_a_gap_in_the_rate_blocks_scale_down():
    gappy = [rated(t, 5_000, ready=4) for t in range(0, 600, 15) if not 300 <= t < 420]
    decision = decide(gappy, ScalerState(replicas=4), RATE, now=585)
    assert decision.held and "gap longer than 60 s" in decision.hold_reason


def test_no_scale_down_until_the_rate_covers_the_peak_window():
    # After an operator restart only 300 s of rate history exist: a quiet rate may not lower replicas.
    recent = [rated(t, 1_000, ready=4) for t in range(0, 315, 15)]
    decision = decide(recent, ScalerState(replicas=4), RATE, now=300)
    assert decision.held and "known for 300 of 600 s" in decision.hold_reason
    # ... but a burst still raises them.
    burst = [*recent, rated(315, 100_000, ready=4)]
    assert decide(burst, ScalerState(replicas=4), RATE, now=315).desired_replicas == 5


def test_an_engine_without_the_rate_scales_on_the_other_signals():
    # Ollama, or an old caller: no sample carries the rate, so scale-down works on the queue as before.
    quiet = [rated(t, None, ready=4) for t in range(0, 330, 15)]
    assert any(d.scaled and d.desired_replicas < 4 for d in run(quiet, replicas=4, config=RATE))


def test_starting_replicas_count_against_the_rate():
    history = [rated(t, 70_000, ready=2, starting=2) for t in range(0, 615, 15)]
    decision = decide(history, ScalerState(replicas=4), RATE, now=600)
    assert decision.desired_replicas == 4 and not decision.scaled


def test_the_rate_peak_does_not_block_scale_to_zero():
    zero = replace(RATE, min_replicas=0)
    busy = [replace(rated(t, 50_000 if t == 600 else 5_000, ready=3), router_in_flight=3.0) for t in range(0, 615, 15)]
    idle = [replace(rated(t, 0.0, ready=3), running_requests=0, router_in_flight=0.0) for t in range(615, 1200, 15)]
    scaled = [d for d in run(busy + idle, replicas=3, config=zero) if d.scaled]
    # Idle for the whole 30 s window from 645: zero 300 s later, while the 50k peak at t=600 is still
    # in the 600 s peak window.
    assert scaled[0].desired_replicas == 0 and scaled[0].state.last_scale_time == 945


def test_rate_signal_off_when_not_configured():
    history = [rated(t, 500_000) for t in range(0, 615, 15)]
    off = replace(RATE, prompt_tokens_per_s_per_replica=None)
    assert decide(history, ScalerState(replicas=2), off, now=600).desired_replicas == 2


def test_default_rate_rule_is_for_an_8b_model_on_an_h100():
    defaults = PolicyConfig()
    assert defaults.prompt_tokens_per_s_per_replica == 20_000
    assert defaults.prompt_rate_headroom == 1.1 and defaults.prompt_rate_peak_window_s == 900


def test_history_covers_the_longest_window_the_policy_reads() -> None:
    config = PolicyConfig(window_s=30, prompt_rate_peak_window_s=900)
    assert history_length(config, 15) == 240  # 900 / 15 + 10 = 70: the floor
    assert history_length(config, 2) == 460  # 900 / 2 + 10


def test_scaling_condition_says_why_it_holds() -> None:
    state = ScalerState(replicas=2)
    assert scaling_condition(2, Decision(3, "queue depth 12 > target 5 x 2 replicas", state)) == (
        "True", "Scaling", "queue depth 12 > target 5 x 2 replicas")
    held = Decision(2, "", state, held=True, hold_reason="metrics stale: newest sample 90 s old > 60 s")
    assert scaling_condition(2, held) == (
        "False", "MetricsUnavailable", "holding 2 replicas: metrics stale: newest sample 90 s old > 60 s")
    assert scaling_condition(2, Decision(2, "x", state), "Prometheus at http://p did not answer")[2] == (
        "holding 2 replicas: Prometheus at http://p did not answer")


# --- time to first token: capacity learned from the engines' latency histograms ------------------------

TTFT_CONFIG = replace(CONFIG, max_replicas=20, target_kv_cache_usage=None, target_gpu_utilization=None,
                      prompt_tokens_per_s_per_replica=None, target_ttft_s=2.0, prompt_rate_peak_window_s=900)


def served(t: float, ready: int, rate: float, prefill_s: float, queue_s: float = 0.0, waiting: float = 0.0,
           starting: int = 0) -> Sample:
    """A scrape of replicas that served `rate` first tokens/s, each after `prefill_s` of prefill."""
    return Sample(timestamp=t, ready_replicas=ready, starting_replicas=starting, waiting_requests=waiting,
                  running_requests=4.0, first_tokens_per_s=rate, prefill_seconds_per_s=rate * prefill_s,
                  queue_seconds_per_s=rate * queue_s)


def steady(rate: float, prefill_s: float, ready: int, minutes: int = 25) -> list[Sample]:
    return [served(15.0 * i, ready, rate, prefill_s) for i in range(minutes * 4)]


def test_ttft_target_sizes_the_fleet_from_the_measured_prefill_time() -> None:
    # 20 requests/s x 0.1 s of prefill = 2 replicas busy; the queueing model adds what keeps 99% under 2 s.
    decisions = run(steady(20.0, 0.1, ready=10), replicas=10, config=TTFT_CONFIG)
    final = decisions[-1]
    assert 3 <= final.desired_replicas < 10
    assert "time to first token" in final.reason and "0.1 s prefill (measured" in final.reason


def test_longer_prefills_need_more_replicas_without_any_setting() -> None:
    """The same request rate on a GPU twice as slow (prefill 0.2 s instead of 0.1 s): the policy learns it."""
    fast = run(steady(20.0, 0.1, ready=10), replicas=10, config=TTFT_CONFIG)[-1].desired_replicas
    slow = run(steady(20.0, 0.2, ready=10), replicas=10, config=TTFT_CONFIG)[-1].desired_replicas
    assert slow >= 2 * fast - 1


def test_ttft_demand_scales_up_at_once_when_requests_double() -> None:
    history = steady(10.0, 0.1, ready=3)
    history += [served(history[-1].timestamp + 15.0 * (i + 1), 3, 40.0, 0.1) for i in range(2)]
    decision = run(history, replicas=3, config=TTFT_CONFIG)[-1]
    assert decision.scaled and decision.desired_replicas > 3


def test_waits_longer_than_the_model_expects_raise_the_estimate() -> None:
    """Measured queue waits far above what the model predicts raise the replicas; shorter ones do not lower them."""
    calm = run(steady(20.0, 0.1, ready=6), replicas=6, config=TTFT_CONFIG)[-1]
    waiting = [served(15.0 * i, 6, 20.0, 0.1, queue_s=1.0) for i in range(100)]
    queued = run(waiting, replicas=6, config=TTFT_CONFIG)[-1]
    assert queued.desired_replicas > calm.desired_replicas
    assert "waits x1 of the model's" in calm.reason and "waits x1 of" not in queued.reason


def test_too_few_requests_leave_the_ttft_signal_out() -> None:
    decision = run(steady(0.01, 0.5, ready=2), replicas=2, config=TTFT_CONFIG)[-1]
    assert "time to first token" not in decision.reason


def test_ttft_history_shorter_than_the_window_never_scales_down() -> None:
    decision = run(steady(1.0, 0.1, ready=8, minutes=5), replicas=8, config=TTFT_CONFIG)[-1]
    assert decision.desired_replicas == 8 and "first-token latency history known for" in decision.reason


def test_no_scale_down_while_replicas_it_asked_for_are_starting() -> None:
    history = [served(15.0 * i, 6, 1.0, 0.1, starting=2) for i in range(100)]
    decisions = run(history, replicas=8, config=TTFT_CONFIG)
    assert all(d.desired_replicas == 8 for d in decisions)
    assert "waiting for 2 starting replicas before scaling down" in decisions[-1].reason


def test_kv_cache_peak_of_the_window_holds_the_replicas_it_needed() -> None:
    config = replace(CONFIG, prompt_tokens_per_s_per_replica=None, target_ttft_s=None, scale_down_delay_s=60)
    busy = [sample(15.0 * i, ready=4, kv=0.9, gpu=None) for i in range(4)]
    calm = [sample(60.0 + 15.0 * i, ready=4, kv=0.2, gpu=None) for i in range(20)]
    decisions = run(busy + calm, replicas=4, config=config)
    # 4 replicas at 0.9 = 3.6 replicas' worth of KV cache in the window: 3.6 / 0.8 -> 5, though now 0.2.
    assert max(d.desired_replicas for d in decisions) == 5 and decisions[-1].desired_replicas == 5


# The KV-cache load model: a replica's KV share u = lam_r * k * tpot with tpot = a + b * u (decode reads the
# resident cache at each step). Here a = 10 ms, b = 20 ms per unit of u, k = 20.
KV_MODEL = replace(CONFIG, prompt_tokens_per_s_per_replica=None, target_ttft_s=None, scale_down_delay_s=300,
                   target_gpu_utilization=None)


def decoding(t: float, ready: int, arrivals: float, kv: float) -> Sample:
    tpot = 0.010 + 0.020 * kv
    running = 40.0 * ready
    return replace(sample(t, ready=ready, waiting=0.0, running=running, kv=kv, gpu=None),
                   first_tokens_per_s=arrivals, prefill_seconds_per_s=0.01 * arrivals,
                   generation_tokens_per_s=running / tpot)


def kv_at(per_replica_arrivals: float) -> float:
    load = per_replica_arrivals * 20
    return load * 0.010 / (1 - load * 0.020)


def burst_then_calm(ready: int) -> list[Sample]:
    """Two minutes each at 1 and 0.5 requests/s per replica, a 30 s burst of 1.5 too short to fill the
    cache, then 10 calm minutes at 1 request/s per replica."""
    rates = [1.0] * 8 + [0.5] * 8 + [1.5] * 2 + [1.0] * 40
    kv = [kv_at(rate) for rate in rates[:16]] + [kv_at(1.0)] * 42
    return [decoding(15.0 * i, ready, rate * ready, used) for i, (rate, used) in enumerate(zip(rates, kv, strict=True))]


def test_the_kv_load_model_keeps_the_replicas_the_peak_arrival_rate_would_fill() -> None:
    decisions = run(burst_then_calm(ready=4), replicas=4, config=KV_MODEL)
    # The cache peaked at 4 x 0.33 replicas' worth (2 replicas at 0.8), but 6 requests/s on 3 replicas
    # would need u = 2.0: past the cliff. On 4 it is 0.75.
    assert all(d.desired_replicas == 4 for d in decisions)
    assert "kv-cache load" in decisions[-1].reason and "need 4 replicas" in decisions[-1].reason
    without = run(burst_then_calm(ready=4), replicas=4, config=replace(KV_MODEL, kv_load_model=False))
    assert without[-1].desired_replicas == 2


def test_the_kv_load_model_keeps_replicas_but_never_adds_them() -> None:
    decisions = run(burst_then_calm(ready=2), replicas=2, config=KV_MODEL)
    assert max(d.desired_replicas for d in decisions) == 2


def test_without_spread_in_kv_use_the_slowdown_is_not_learned() -> None:
    flat = [decoding(15.0 * i, 4, 4.0, kv_at(1.0)) for i in range(30)]
    decisions = run(flat, replicas=4, config=KV_MODEL)
    assert "+ 0 ms x KV use" in decisions[-1].reason or "kv-cache load" not in decisions[-1].reason


def test_a_replica_that_stops_reporting_holds_the_count_and_says_so():
    """A ready replica whose queue metric is gone from the newest sample (NaN, a target Prometheus cannot
    scrape, no series): the window's older samples still give a mean, but the decision is a hold, so
    ScalingActive=False names it; a scale-up the others ask for still happens."""
    full = [sample(t, ready=2, waiting=0.0, kv=0.5) for t in range(0, 300, 15)]
    partial = full + [sample(t, ready=2, waiting=None, kv=None) for t in range(300, 360, 15)]
    decisions = run(partial, replicas=2)
    assert not any(d.held for d in decisions[:len(full)])
    assert all(d.held and d.desired_replicas == 2 for d in decisions[len(full):])
    assert "reports no queue metric now" in decisions[-1].hold_reason
    busy = [*full, sample(300, ready=2, waiting=None, kv=0.99)]
    assert run(busy, replicas=2)[-1].desired_replicas > 2
