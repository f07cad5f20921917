"""Every rule of llm_operator.autoscale.policy, one test (or a few) each."""

from __future__ import annotations

from dataclasses import replace

from llm_operator.autoscale.policy import Decision, PolicyConfig, Sample, ScalerState, decide

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
