"""The simulator's arithmetic on tiny traces whose numbers can be worked out by hand."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pytest
from bench.autoscale.__main__ import Bench
from bench.autoscale.calibration import A100, H100, KV_BYTES_PER_TOKEN, Hardware
from bench.autoscale.policies import OurPolicy, StaticPolicy
from bench.autoscale.report import summarize
from bench.autoscale.simulator import ClusterView, SimSettings, simulate
from bench.autoscale.traces import load_trace, make_trace

from llm_operator.autoscale.policy import PolicyConfig

# Round numbers: a full 1000-token step takes 1000 / 10k = 0.1 s, so prefill runs at 10k tokens/s;
# a decode step takes the 10 ms floor.
TOY = Hardware(
    name="toy",
    step_floor_s=0.01,
    kv_read_s_per_token=0.0,
    token_rate_per_s=10_000,
    kv_capacity_tokens=100_000,
    max_num_seqs=64,
    max_batched_tokens=1000,
)
SETTINGS = SimSettings(cold_start_s=45, min_replicas=0, max_replicas=4)


def test_one_request():
    trace = make_trace("one", [0.0], [1000], [10])
    result = simulate(trace, StaticPolicy(1), TOY, SETTINGS)
    assert result.queue_wait_s[0] == 0.0
    assert result.ttft_s[0] == pytest.approx(0.1)  # 1000 prompt tokens at 10k tokens/s
    assert result.horizon_s == 1
    assert result.gpu_hours == pytest.approx(1 / 3600)
    assert result.timeline["queue"][0] == 0


def test_a_burst_queues_on_one_replica_and_needs_a_second():
    # One output token each (emitted by the prefill), so no decode tokens share the steps.
    trace = make_trace("burst", [0.0] * 20, [1000] * 20, [1] * 20)
    one = simulate(trace, StaticPolicy(1), TOY, SETTINGS)
    # Prefills run one after another: request i starts at 0.1 i and has its first token at 0.1 (i + 1).
    assert one.queue_wait_s == pytest.approx([0.1 * i for i in range(20)])
    assert one.ttft_s == pytest.approx([0.1 * (i + 1) for i in range(20)])
    least_busy = replace(SETTINGS, routing="least-busy")
    two = simulate(trace, StaticPolicy(2), TOY, least_busy)
    # A least-busy router alternates: each replica serves 10, the last first token comes at 1.0 s.
    assert max(two.ttft_s) == pytest.approx(1.0)
    assert summarize(one, slo_ttft_s=1.05)["slo_attainment"] == 0.5
    assert summarize(two, slo_ttft_s=1.05)["slo_attainment"] == 1.0
    bench = Bench(trace, TOY, SimSettings(min_replicas=1, max_replicas=4, routing="least-busy"), slo_ttft_s=1.05,
                  slo_target=1.0)
    assert bench.static_peak().timeline["gpus"][0] == 2


def test_random_routing_is_what_kube_proxy_does_and_is_seeded():
    """The operator's router reaches the replicas through the engine Service: each request lands on a random
    ready replica, so two replicas split 20 requests unevenly, and the same seed gives the same split."""
    trace = make_trace("burst", [0.0] * 20, [1000] * 20, [1] * 20)
    first = simulate(trace, StaticPolicy(2), TOY, SETTINGS)
    again = simulate(trace, StaticPolicy(2), TOY, SETTINGS)
    assert np.array_equal(first.ttft_s, again.ttft_s)
    # The busier replica's last first token comes at 0.1 x its share; uneven shares make that later than 1.0 s.
    assert max(first.ttft_s) >= 1.0 - 1e-9


def test_decode_steps_take_the_floor_and_batch():
    # 500 tokens to generate one at a time at 10 ms a step: the request is done after ~5 s, not before.
    trace = make_trace("decode", [0.0, 10.0], [1000, 1000], [501, 1])
    result = simulate(trace, StaticPolicy(1), TOY, SETTINGS)
    assert result.ttft_s[0] == pytest.approx(0.1)
    running = [view.running for view in _views(trace, StaticPolicy(1))]
    assert running[1:5] == [1, 1, 1, 1]  # still decoding after 4 s
    assert running[6] == 0  # 0.9 s in tick 0 (90 tokens) + 4 x 100 + 10 more: done in tick 5


@dataclass
class ScaleOnRouter:
    """Scale from zero to one when the router holds a request."""

    name: str = "scale-on-router"
    period_s: int = 1

    def initial_replicas(self) -> int:
        return 0

    def decide(self, view: ClusterView) -> int:
        return 1 if view.router_in_flight or view.replicas else 0


def test_cold_start_delays_the_first_token_and_costs_gpu_time():
    trace = make_trace("cold", [0.0, 60.0], [1000, 1000], [1, 1])
    result = simulate(trace, ScaleOnRouter(), TOY, SETTINGS)
    # t=0: the request reaches the router; t=1: the policy sees it and creates a replica,
    # ready 45 s later at t=46, when the held request is prefilled in 0.1 s.
    assert result.queue_wait_s[0] == pytest.approx(46.0)
    assert result.ttft_s[0] == pytest.approx(46.1)
    assert result.ttft_s[1] == pytest.approx(0.1)
    assert result.timeline["gpus"][1] == 1 and result.timeline["ready"][45] == 0
    assert result.timeline["ready"][46] == 1
    assert result.gpu_hours == pytest.approx(60 / 3600)  # held from t=1 to the end of t=60
    assert result.scale_actions == 1


def test_kv_cache_capacity_makes_requests_wait():
    small = Hardware(
        name="small",
        step_floor_s=0.01,
        kv_read_s_per_token=0.0,
        token_rate_per_s=10_000,
        kv_capacity_tokens=1500,
        max_num_seqs=64,
        max_batched_tokens=1000,
    )
    trace = make_trace("kv", [0.0, 0.0], [1000, 1000], [200, 1])
    result = simulate(trace, StaticPolicy(1), small, SETTINGS)
    # The second request (1001 tokens) fits only once the first (1200) has finished, at the end of tick 2.
    assert result.ttft_s[0] == pytest.approx(0.1)
    assert result.queue_wait_s[1] == pytest.approx(3.0)


def test_calibration_numbers():
    assert KV_BYTES_PER_TOKEN == 128 * 1024
    assert 430_000 < H100.kv_capacity_tokens == A100.kv_capacity_tokens < 460_000
    assert H100.step_floor_s < A100.step_floor_s and H100.token_rate_per_s > A100.token_rate_per_s


def test_traces_csv_and_jsonl_agree(tmp_path):
    csv_file = tmp_path / "t.csv"
    csv_file.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:04.5000000,20,2\n2023-11-16 18:17:03.9799600,10,1\n"
    )
    jsonl_file = tmp_path / "t.jsonl"
    jsonl_file.write_text(
        '{"timestamp": 1000, "input_length": 10, "output_length": 1}\n'
        '{"timestamp": 1520.04, "input_length": 20, "output_length": 2}\n'
    )
    for trace in (load_trace(csv_file), load_trace(jsonl_file, speedup=1.0)):
        assert trace.arrival_s.tolist() == pytest.approx([0.0, 0.52004], abs=1e-5)
        assert trace.prompt_tokens.tolist() == [10, 20]
    assert load_trace(csv_file, speedup=2).duration_s == pytest.approx(0.26002, abs=1e-5)


def _views(trace, policy) -> list[ClusterView]:
    seen: list[ClusterView] = []
    policy.period_s = 1
    simulate(trace, policy, TOY, SETTINGS, on_tick=seen.append)
    return seen


def test_gpu_hours_are_replicas_times_duration():
    trace = make_trace("flat", [0.0, 3599.0], [10, 10], [1, 1])
    result = simulate(trace, StaticPolicy(3), TOY, SETTINGS)
    assert result.horizon_s == 3600
    assert math.isclose(result.gpu_hours, 3.0)


def test_prompt_token_counter_counts_prefills_done_and_ours_reads_its_rate():
    # Ten 1000-token prompts at t=0 on one replica: prefilled at 10k tokens/s, first tokens at 0.1 ... 1.0 s.
    trace = make_trace("counter", [0.0] * 10 + [29.0], [1000] * 10 + [10], [1] * 11)
    views = _views(trace, StaticPolicy(1))
    assert views[0].prompt_tokens_total == 0  # scraped before the tick runs
    assert views[1].prompt_tokens_total == 10_000
    assert views[15].prompt_tokens_total == 10_000
    policy = OurPolicy(PolicyConfig(min_replicas=1, max_replicas=4))
    policy.decide(views[0])
    policy.decide(views[15])
    # irate over the 15 s between two scrapes, as the operator reads it from Prometheus.
    assert [sample.prompt_tokens_per_s for sample in policy.history] == [None, pytest.approx(10_000 / 15)]


def test_oracle_never_costs_more_than_static_peak_and_meets_the_slo():
    # A burst that needs two replicas for a few seconds, then one request a minute: the oracle may
    # not beat one always-on fleet here, but must never cost more than it.
    arrivals = [0.0] * 20 + [60.0 * k for k in range(1, 6)]
    trace = make_trace("oracle", arrivals, [1000] * 25, [1] * 25)
    bench = Bench(trace, TOY, SimSettings(min_replicas=1, max_replicas=4, cold_start_s=45), 1.05, 1.0)
    static = bench.static_peak()
    oracle = bench.oracle(static)
    assert bench.meets_slo(oracle)
    assert oracle.gpu_hours <= static.gpu_hours


def test_ours_is_the_operators_mapping_of_an_llmservice_spec() -> None:
    from bench.autoscale.__main__ import our_variants
    from bench.autoscale.simulator import SimSettings

    variants = our_variants(SimSettings(min_replicas=1, max_replicas=12), A100, 900)
    assert list(variants) == ["ours", "ours-rate-target", "ours-delay-900s"]
    ours, rate_target, delayed = variants["ours"], variants["ours-rate-target"], variants["ours-delay-900s"]
    assert (ours.min_replicas, ours.max_replicas) == (1, 12)
    # The API's defaults: no per-GPU rate, the TTFT target on at 2 s.
    assert ours.prompt_tokens_per_s_per_replica is None and ours.target_ttft_s == 2.0
    assert ours.scale_down_delay_s == 300.0
    assert ours.target_kv_cache_usage == 0.8 and ours.target_queue_depth == 5.0
    # The previous way: the GPU's calibrated prefill rate, TTFT target off.
    assert rate_target.prompt_tokens_per_s_per_replica == A100.token_rate_per_s and rate_target.target_ttft_s is None
    assert delayed.scale_down_delay_s == 900.0
    assert delayed.prompt_rate_peak_window_s == ours.prompt_rate_peak_window_s == 900.0
    assert list(our_variants(SimSettings(), H100, 0)) == ["ours", "ours-rate-target"]


def test_latency_counters_are_the_histograms_sums_and_ours_reads_their_rates() -> None:
    """Two prompts at once on one replica: the second waits for the first's prefill (0.1 s)."""
    trace = make_trace("pair", [0.0, 0.0, 40.0], [1000, 1000, 1000], [1, 1, 1])
    views = []
    policy = OurPolicy(PolicyConfig(min_replicas=1, max_replicas=1))
    simulate(trace, policy, TOY, SimSettings(min_replicas=1, max_replicas=1), on_tick=views.append)
    at_30 = next(v for v in views if v.now == 30.0)
    assert at_30.first_tokens_total == 2
    assert at_30.queue_seconds_total == pytest.approx(0.1)  # only the second waited
    assert at_30.prefill_seconds_total == pytest.approx(0.2)  # 0.1 s each
    rates = [(s.first_tokens_per_s, s.prefill_seconds_per_s, s.queue_seconds_per_s) for s in policy.history]
    assert rates[0] == (None, None, None)
    assert rates[1] == (pytest.approx(2 / 15), pytest.approx(0.2 / 15), pytest.approx(0.1 / 15))
    assert rates[2] == (0.0, 0.0, 0.0)
