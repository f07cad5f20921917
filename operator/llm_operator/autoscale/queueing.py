"""How many replicas keep the wait for a first token under a target: a queueing model, pure math.

Each replica starts prefills one after another (vLLM and SGLang schedule waiting prompts first come, first
served), and requests reach the replicas at random: the router sends every request to the engine's
Service on a new connection and kube-proxy picks a ready endpoint. So each replica is its own M/G/1 queue
receiving 1/c of the requests.

Per replica: utilization rho = arrival_rate * mean_service_s / c; the mean wait is Pollaczek-Khinchine's,
W = rho * mean_service_s * (1 + scv) / (2 (1 - rho)), with `scv` the squared coefficient of variation of
prefill times; a request waits with probability rho, and given that, its wait is taken as exponential
with mean W / rho, so P(wait > t) = rho * exp(-t * rho / W). `wait_scale` multiplies W: the policy sets it
from the waits the engines measured against the model's own prediction, when they are longer.
"""

from __future__ import annotations

import math

MAX_SEARCH = 4096  # replicas: far beyond any maxReplicas, bounds the search on absurd inputs


def mean_wait(servers: int, arrival_rate: float, mean_service_s: float, scv: float) -> float:
    """Mean wait before a prefill starts (infinite when the replicas cannot keep up)."""
    rho = arrival_rate * mean_service_s / servers
    if rho <= 0:
        return 0.0
    if rho >= 1:
        return math.inf
    return rho * mean_service_s * (1.0 + scv) / (2.0 * (1.0 - rho))


def wait_tail(servers: int, arrival_rate: float, mean_service_s: float, scv: float, allowance_s: float,
              wait_scale: float = 1.0) -> float:
    """P(wait > allowance_s) with `servers` replicas."""
    rho = arrival_rate * mean_service_s / servers
    if rho <= 0:
        return 0.0
    if rho >= 1:
        return 1.0
    mean = wait_scale * mean_wait(servers, arrival_rate, mean_service_s, scv)
    return rho * math.exp(-allowance_s * rho / mean)


def replicas_for_mix(arrival_rates: list[float], mean_service_s: float, scv: float, allowance_s: float,
                     tail: float, wait_scale: float = 1.0) -> int:
    """The fewest replicas for which, over a mix of moments with the given arrival rates (equal lengths),
    at most a share `tail` of all requests wait longer than `allowance_s`: the SLO over the mix, where a
    busy moment weighs by the requests it brings. At least 1; MAX_SEARCH when even that many would not do."""
    total = sum(arrival_rates)
    if total <= 0 or mean_service_s <= 0:
        return 1
    servers = max(1, math.floor(max(arrival_rates) * mean_service_s) + 1)  # the busiest moment must be stable
    while servers < MAX_SEARCH:
        missed = sum(rate * wait_tail(servers, rate, mean_service_s, scv, allowance_s, wait_scale)
                     for rate in arrival_rates)
        if missed <= tail * total:
            return servers
        servers += 1
    return servers
