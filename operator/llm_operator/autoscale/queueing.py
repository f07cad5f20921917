"""How many replicas keep the wait for a first token under a target: the M/G/c queue, pure math.

A replica starts prefills one after another (vLLM and SGLang schedule waiting prompts first come, first
served), so a fleet of c replicas behind a least-busy router is close to c servers sharing one queue.
Requests arrive at rate `arrival_rate`; a prefill takes `mean_service_s` on average (measured from the
engines, so it already includes the decode work that shares the GPU) with squared coefficient of
variation `scv` (1 for exponential service; long-context traffic with a heavy tail of prompt lengths
has more). The probability that a request waits more than `allowance_s` is, for M/M/c,

    P(W > t) = C(c, a) * exp(-(c - a) * t / mean_service_s),   a = arrival_rate * mean_service_s,

with C(c, a) Erlang's C formula (the chance that all c are busy). For general service times the mean
wait scales by (1 + scv) / 2 (Allen-Cunneen), which is applied to the decay rate. `replicas_for_wait`
returns the smallest c that brings P(W > allowance) down to `tail`; `replicas_for_mix` the smallest that
does so for the requests of a mix of busier and quieter moments taken together.
"""

from __future__ import annotations

import math

MAX_SEARCH = 4096  # replicas: far beyond any maxReplicas, bounds the search on absurd inputs


def erlang_c(servers: int, offered_load: float) -> float:
    """Probability that an arrival waits (all `servers` busy) in M/M/c with load a = lambda * E[S]; 1 when
    the queue is unstable (a >= c)."""
    if offered_load <= 0:
        return 0.0
    if offered_load >= servers:
        return 1.0
    blocking = 1.0  # Erlang B by its recurrence, stable for large c
    for k in range(1, servers + 1):
        blocking = offered_load * blocking / (k + offered_load * blocking)
    return servers * blocking / (servers - offered_load * (1.0 - blocking))


def mean_wait(servers: int, arrival_rate: float, mean_service_s: float) -> float:
    """Mean wait in M/M/c (infinite when the queue is unstable)."""
    load = arrival_rate * mean_service_s
    if load <= 0:
        return 0.0
    if load >= servers:
        return math.inf
    return erlang_c(servers, load) * mean_service_s / (servers - load)


def wait_tail(servers: int, arrival_rate: float, mean_service_s: float, scv: float, allowance_s: float) -> float:
    """P(wait > allowance_s) for `servers` replicas (M/G/c, Allen-Cunneen scaled)."""
    load = arrival_rate * mean_service_s
    if load <= 0:
        return 0.0
    if load >= servers:
        return 1.0
    decay = (servers - load) / mean_service_s * allowance_s * 2.0 / (1.0 + scv)
    return erlang_c(servers, load) * math.exp(-decay)


def replicas_for_wait(arrival_rate: float, mean_service_s: float, scv: float, allowance_s: float, tail: float) -> int:
    """The fewest replicas for which at most a share `tail` of requests wait longer than `allowance_s`
    (at least 1; MAX_SEARCH when even that many would not do)."""
    if arrival_rate <= 0 or mean_service_s <= 0:
        return 1
    servers = max(1, math.floor(arrival_rate * mean_service_s) + 1)
    while servers < MAX_SEARCH and wait_tail(servers, arrival_rate, mean_service_s, scv, allowance_s) > tail:
        servers += 1
    return servers


def replicas_for_mix(
    arrival_rates: list[float], mean_service_s: float, scv: float, allowance_s: float, tail: float
) -> int:
    """The fewest replicas for which, over a mix of moments with the given arrival rates (equal lengths),
    at most a share `tail` of all requests wait longer than `allowance_s`: the SLO over the mix, where a
    busy moment weighs by the requests it brings."""
    total = sum(arrival_rates)
    if total <= 0 or mean_service_s <= 0:
        return 1
    servers = max(1, replicas_for_wait(total / len(arrival_rates), mean_service_s, scv, allowance_s, tail))
    while servers < MAX_SEARCH:
        missed = sum(rate * wait_tail(servers, rate, mean_service_s, scv, allowance_s) for rate in arrival_rates)
        if missed <= tail * total:
            return servers
        servers += 1
    return servers
