"""The M/G/c arithmetic behind the TTFT target, checked against closed forms."""

from __future__ import annotations

import math

import pytest

from llm_operator.autoscale.queueing import erlang_c, mean_wait, replicas_for_mix, replicas_for_wait, wait_tail


def test_erlang_c_closed_forms() -> None:
    assert erlang_c(1, 0.6) == pytest.approx(0.6)  # M/M/1: an arrival waits with probability rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)  # c = 2, a = 1: a^2 / (2 (2 - a) + ... ) = 1/3
    assert erlang_c(3, 3.0) == 1.0 and erlang_c(3, 0.0) == 0.0


def test_mean_wait_of_mm1_and_the_unstable_queue() -> None:
    # M/M/1 with rho = 0.5 and a 1 s service: Wq = rho / (mu - lambda) = 0.5 / 0.5 = 1 s.
    assert mean_wait(1, 0.5, 1.0) == pytest.approx(1.0)
    assert mean_wait(2, 3.0, 1.0) == math.inf


def test_the_tail_falls_with_replicas_and_rises_with_variability() -> None:
    tails = [wait_tail(c, 5.0, 0.5, 1.0, 2.0) for c in range(3, 9)]
    assert tails == sorted(tails, reverse=True) and tails[0] > 0.01 > tails[-1]
    assert wait_tail(4, 5.0, 0.5, 4.0, 2.0) > wait_tail(4, 5.0, 0.5, 1.0, 2.0)
    # M/M/1: P(W > t) = rho exp(-(mu - lambda) t).
    assert wait_tail(1, 0.5, 1.0, 1.0, 2.0) == pytest.approx(0.5 * math.exp(-0.5 * 2.0))


def test_replicas_for_wait_is_the_smallest_that_meets_the_tail() -> None:
    replicas = replicas_for_wait(5.0, 0.5, 2.0, 2.0, 0.01)
    assert wait_tail(replicas, 5.0, 0.5, 2.0, 2.0) <= 0.01 < wait_tail(replicas - 1, 5.0, 0.5, 2.0, 2.0)
    assert replicas_for_wait(0.0, 0.5, 2.0, 2.0, 0.01) == 1


def test_a_mix_weighs_busy_moments_by_their_requests() -> None:
    quiet_and_busy = [1.0] * 9 + [10.0]
    mixed = replicas_for_mix(quiet_and_busy, 0.5, 2.0, 2.0, 0.01)
    # Between sizing for the average moment and for the busiest one.
    assert replicas_for_wait(1.9, 0.5, 2.0, 2.0, 0.01) <= mixed <= replicas_for_wait(10.0, 0.5, 2.0, 2.0, 0.01)
    missed = sum(rate * wait_tail(mixed, rate, 0.5, 2.0, 2.0) for rate in quiet_and_busy)
    assert missed <= 0.01 * sum(quiet_and_busy)
