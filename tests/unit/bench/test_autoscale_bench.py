"""The autoscaling benchmark's SLO, oracle, defaults and stress traces, on traces small enough to reason about."""

from __future__ import annotations

import numpy as np
import pytest
from bench.autoscale.__main__ import Bench, needed_max_replicas, smallest_static
from bench.autoscale.calibration import Hardware
from bench.autoscale.matrix import verdict
from bench.autoscale.policies import StaticPolicy
from bench.autoscale.report import UNATTAINABLE, markdown_table, slo_deadlines
from bench.autoscale.simulator import SimSettings, simulate
from bench.autoscale.stress import GENERATORS, generate
from bench.autoscale.traces import make_trace

TOY = Hardware(name="toy", step_floor_s=0.01, kv_read_s_per_token=0.0, token_rate_per_s=10_000,
               kv_capacity_tokens=1_000_000, max_num_seqs=64, max_batched_tokens=1000)


def test_the_length_aware_slo_allows_each_request_its_own_prefill() -> None:
    deadlines = slo_deadlines(np.array([10, 1000, 100_000]), 10_000, 0.01, 2.0)
    assert deadlines == pytest.approx([2.01, 2.1, 12.0])  # the floor of one step, then tokens / rate


def test_a_long_prompt_alone_meets_the_length_aware_slo_but_not_the_fixed_one() -> None:
    trace = make_trace("long", [0.0], [50_000], [1])  # 5 s of prefill on an idle replica
    bench = Bench(trace, TOY, SimSettings(min_replicas=1, max_replicas=1), 2.0, 0.99)
    summary = bench.summarize(bench.run(StaticPolicy(1)))
    assert summary["slo_attainment"] == 1.0 and summary["ttft_attainment"] == 0.0


def test_unattainable_when_even_max_replicas_miss() -> None:
    # 40 prompts of 2 s each at once on at most 2 replicas: most wait far more than 2 s.
    trace = make_trace("flood", [0.0] * 40, [20_000] * 40, [1] * 40)
    bench = Bench(trace, TOY, SimSettings(min_replicas=1, max_replicas=2, cold_start_s=45), 2.0, 0.99)
    assert bench.static_peak() is None
    assert bench.oracle(None) is None
    table = markdown_table({"static-peak": UNATTAINABLE, "oracle": UNATTAINABLE}, 2.0, 0.99)
    assert "oracle: unattainable" in table


def test_oracle_meets_the_slo_and_never_costs_more_than_static() -> None:
    arrivals = [0.0] * 20 + [60.0 * k for k in range(1, 20)]
    trace = make_trace("burst-then-trickle", arrivals, [5_000] * 39, [1] * 39)
    bench = Bench(trace, TOY, SimSettings(min_replicas=1, max_replicas=8, cold_start_s=45), 2.0, 0.99)
    static = bench.static_peak()
    oracle = bench.oracle(static)
    assert static is not None and oracle is not None
    assert bench.meets_slo(oracle) and oracle.gpu_hours <= static.gpu_hours


def test_smallest_static_and_the_default_max_replicas() -> None:
    trace = make_trace("burst", [0.0] * 20, [5_000] * 20, [1] * 20)  # 0.5 s each: 10 s of work at once
    bench = Bench(trace, TOY, SimSettings(min_replicas=1, max_replicas=64), 2.0, 1.0)
    found = smallest_static(bench, 1, 64)
    assert found is not None
    replicas, result = found
    assert bench.meets_slo(result)
    assert not bench.meets_slo(simulate(trace, StaticPolicy(replicas - 1), TOY, bench.settings))
    assert needed_max_replicas(trace, TOY, SimSettings(), 2.0, 1.0) == max(2 * replicas, replicas + 2)


@pytest.mark.parametrize("name", GENERATORS)
def test_stress_traces_are_seeded_and_an_hour_long(name: str) -> None:
    first, again = generate(name), generate(name)
    assert np.array_equal(first.arrival_s, again.arrival_s) and np.array_equal(first.prompt_tokens, again.prompt_tokens)
    assert 3000 < first.duration_s <= 3600 and len(first) > 1000
    assert not np.array_equal(generate(name, seed=99).arrival_s[:50], first.arrival_s[:50])


def test_stress_shapes() -> None:
    prefill = generate("prefill-heavy")
    assert 10_000 < prefill.prompt_tokens.mean() < 14_000 and prefill.prompt_tokens.max() > 100_000
    assert 3.0 < len(prefill) / prefill.duration_s < 3.8
    decode = generate("decode-heavy")
    assert decode.output_tokens.mean() > 5 * decode.prompt_tokens.mean()
    crowd = generate("flash-crowd")
    per_30s = np.bincount((crowd.arrival_s // 30).astype(int))
    assert per_30s[:35].mean() * 7 < per_30s[42:50].mean()  # ten times the base rate at its height
    gaps = np.diff(generate("on-off").arrival_s)
    assert gaps.max() > 480  # idle gaps of 8 minutes and more
    diurnal = np.bincount((generate("diurnal").arrival_s // 600).astype(int))
    assert diurnal[2] + diurnal[3] > 4 * (diurnal[0] + diurnal[5])


def test_verdict_names_what_ours_misses() -> None:
    met = {"gpu_hours": 2.0, "slo_attainment": 0.995}
    assert verdict({"static-peak": {"gpu_hours": 3.0, "slo_attainment": 1.0}, "ours": met,
                    "oracle": {"gpu_hours": 1.9, "slo_attainment": 0.99}}) == "1.05x oracle"
    dear = verdict({"static-peak": {"gpu_hours": 1.5, "slo_attainment": 1.0}, "ours": {**met, "slo_attainment": 0.9},
                    "oracle": UNATTAINABLE})
    assert dear == "misses SLO; dearer than static-peak; SLO unattainable"
