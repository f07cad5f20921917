"""The queueing arithmetic behind the TTFT target, checked against closed forms."""

from __future__ import annotations

import math

import pytest

from llm_operator.autoscale.queueing import mean_wait, replicas_for_mix, wait_tail


def test_mean_wait_is_pollaczek_khinchine_per_replica() -> None:
    # One replica at rho = 0.5 with a 1 s exponential service (scv 1): W = 0.5 * 1 * 2 / (2 * 0.5) = 1 s.
    assert mean_wait(1, 0.5, 1.0, 1.0) == pytest.approx(1.0)
    # Two replicas share the requests: each sees half of them.
    assert mean_wait(2, 1.0, 1.0, 1.0) == pytest.approx(1.0)
    # Deterministic service (scv 0) waits half as long; overload waits forever.
    assert mean_wait(1, 0.5, 1.0, 0.0) == pytest.approx(0.5)
    assert mean_wait(2, 3.0, 1.0, 1.0) == math.inf


def test_the_tail_falls_with_replicas_and_rises_with_variability_and_the_scale() -> None:
    tails = [wait_tail(c, 5.0, 0.5, 1.0, 2.0) for c in range(3, 20)]
    assert tails == sorted(tails, reverse=True) and tails[0] > 0.01 > tails[-1]
    assert wait_tail(4, 5.0, 0.5, 4.0, 2.0) > wait_tail(4, 5.0, 0.5, 1.0, 2.0)
    assert wait_tail(4, 5.0, 0.5, 1.0, 2.0, wait_scale=3.0) > wait_tail(4, 5.0, 0.5, 1.0, 2.0)
    # M/M/1: P(W > t) = rho exp(-(mu - lambda) t).
    assert wait_tail(1, 0.5, 1.0, 1.0, 2.0) == pytest.approx(0.5 * math.exp(-0.5 * 2.0))
    assert wait_tail(2, 0.0, 1.0, 1.0, 2.0) == 0.0 and wait_tail(2, 4.0, 1.0, 1.0, 2.0) == 1.0


def test_a_mix_weighs_busy_moments_by_their_requests() -> None:
    quiet_and_busy = [1.0] * 9 + [10.0]
    mixed = replicas_for_mix(quiet_and_busy, 0.5, 2.0, 2.0, 0.01)
    missed = sum(rate * wait_tail(mixed, rate, 0.5, 2.0, 2.0) for rate in quiet_and_busy)
    assert missed <= 0.01 * sum(quiet_and_busy)
    fewer = sum(rate * wait_tail(mixed - 1, rate, 0.5, 2.0, 2.0) for rate in quiet_and_busy)
    assert fewer > 0.01 * sum(quiet_and_busy)  # the smallest that meets it
    # Between sizing for the average moment and for the busiest one alone.
    assert replicas_for_mix([1.9], 0.5, 2.0, 2.0, 0.01) <= mixed <= replicas_for_mix([10.0], 0.5, 2.0, 2.0, 0.01)
    assert replicas_for_mix([0.0, 0.0], 0.5, 2.0, 2.0, 0.01) == 1
