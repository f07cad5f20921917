"""A discrete-time simulation of vLLM replicas behind a least-busy router.

Control resolution is one second (`TICK_S`). Inside a tick each replica runs
continuous batching as a fluid model of vLLM's engine steps with chunked
prefill:

- a step batches one token per decoding sequence plus prefill chunks, up to
  `max_batched_tokens`; it takes max(memory-bound floor, batched tokens /
  token rate), where the floor grows with the KV cache the batch reads;
- prefills are served first come, first served at the rate left over by the
  decode tokens, so each request gets a sub-second start (queue wait) and
  first-token time (TTFT) instead of one rounded to the tick;
- decoding sequences get one token per step: steps that carry a full prefill
  chunk are slow (compute-bound), pure decode steps are fast;
- a request is admitted only while fewer than `max_num_seqs` run and its
  prompt plus output tokens fit in the free KV cache (reserved at admission:
  no preemption, a conservative reading of vLLM's paged allocation).

Fleet: a new replica holds its GPU from the moment it is created and becomes
ready `cold_start_s` later, as the operator's readiness (`readyReplicas`)
reports it; only ready replicas receive requests. Routing is what the operator
deploys: LiteLLM sends each request to the engine Service on a new connection
(`Connection: close`) and kube-proxy picks a ready endpoint at random (seeded);
`SimSettings.routing="least-busy"` instead sends it to the replica with the
fewest in-flight requests. With none ready the router holds the request. Removed replicas take no
new requests and drain the ones they hold (graceful termination), holding
their GPU until empty. Starting replicas are removed before ready ones.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from bench.autoscale.calibration import Hardware
from bench.autoscale.traces import Trace

TICK_S = 1.0


@dataclass(frozen=True)
class ClusterView:
    """What a policy can observe at one tick: the operator's status and the scraped metrics."""

    now: float
    replicas: int  # Deployment replicas: ready + starting
    ready: int
    starting: int
    waiting: int  # vllm:num_requests_waiting summed over ready replicas
    running: int  # vllm:num_requests_running summed over ready replicas
    kv_usage: float | None  # vllm:kv_cache_usage_perc, mean over ready replicas
    gpu_util: float | None  # DCGM_FI_DEV_GPU_UTIL percent, mean over ready replicas
    router_in_flight: int  # requests inside the router: held or forwarded and not done
    # vllm:prompt_tokens_total summed over every replica: prompt tokens whose prefill has finished (vLLM
    # counts a prompt when its first token is out). A counter; policies take its rate between scrapes.
    prompt_tokens_total: float = 0.0
    # The latency histograms' _count and _sum as counters: vllm:time_to_first_token_seconds_count (first
    # tokens out), vllm:request_prefill_time_seconds_sum and vllm:request_queue_time_seconds_sum. vLLM
    # observes the last two when a request finishes; here they count at its first token (the policy
    # sums them over 15 minutes, where the lag of one decode changes little).
    first_tokens_total: float = 0.0
    prefill_seconds_total: float = 0.0
    queue_seconds_total: float = 0.0
    # vllm:generation_tokens_total summed over every replica: output tokens decoded.
    generation_tokens_total: float = 0.0


class Policy(Protocol):
    name: str
    period_s: int

    def initial_replicas(self) -> int: ...

    def decide(self, view: ClusterView) -> int: ...


@dataclass(frozen=True)
class SimSettings:
    cold_start_s: float = 120.0
    min_replicas: int = 1
    max_replicas: int = 8
    drain_limit_s: float = 1800.0  # simulated after the last arrival to finish what is queued
    # Replicas at t=0 for policies that adapt (None: the policy's own initial count). The trace is a
    # window cut out of a service that was already running, so the bench starts them warm.
    initial_replicas: int | None = None
    # How requests reach the replicas. "random": what the operator deploys, the router sends every request
    # to the engine's Service on a new connection and kube-proxy picks a ready endpoint at random;
    # "least-busy": a router that sees every replica and picks the one with the fewest requests in flight.
    routing: str = "random"


class _Requests:
    """The trace as plain Python lists (fast scalar access) plus result arrays."""

    def __init__(self, trace: Trace):
        self.arrival = trace.arrival_s.tolist()
        self.prompt = trace.prompt_tokens.tolist()
        self.output = trace.output_tokens.tolist()
        self.queue_wait = np.full(len(trace), np.nan)
        self.ttft = np.full(len(trace), np.nan)
        self._arrival = trace.arrival_s
        self._prompt = trace.prompt_tokens.astype(np.float64)
        self.generated = 0.0  # output tokens decoded by every replica so far (vllm:generation_tokens_total)

    def prompt_tokens_done(self, now: float) -> float:
        """Prompt tokens whose first token came out by `now` (NaN TTFT: not yet)."""
        with np.errstate(invalid="ignore"):
            return float(self._prompt[self._arrival + self.ttft <= now].sum())

    def counters(self, now: float) -> dict[str, float]:
        """The engines' counters at `now` over the requests whose first token is out."""
        with np.errstate(invalid="ignore"):
            done = self._arrival + self.ttft <= now
        wait = self.queue_wait[done]
        return {
            "prompt_tokens_total": float(self._prompt[done].sum()),
            "first_tokens_total": float(done.sum()),
            "prefill_seconds_total": float((self.ttft[done] - wait).sum()),
            "queue_seconds_total": float(wait.sum()),
            "generation_tokens_total": self.generated,
        }


class Replica:
    def __init__(self, hardware: Hardware, ready_at: float):
        self.hardware = hardware
        self.ready_at = ready_at
        self.waiting: deque[int] = deque()
        self.busy_until = -math.inf  # end of the last admitted prefill
        self.kv_reserved = 0
        self.remaining = np.empty(0)  # output tokens still to generate, per running request
        self.kv_tokens = np.empty(0)  # prompt + output tokens, per running request
        self.first_token_at = np.empty(0)
        self.gpu_busy_fraction = 0.0

    def in_flight(self) -> int:
        return len(self.waiting) + len(self.remaining)

    def kv_usage(self) -> float:
        """Share of the KV cache taken (what vllm:kv_cache_usage_perc reports): here the reservations, since
        they are what admits or blocks a request in this model; vLLM allocates blocks as tokens come and
        preempts when full, so its gauge tracks the same limit."""
        return self.kv_reserved / self.hardware.kv_capacity_tokens

    def advance(self, start: float, requests: _Requests) -> None:
        """Run the engine from `start` for one tick."""
        hw = self.hardware
        end = start + TICK_S
        decoding = self.first_token_at <= start
        n_decoding = int(decoding.sum())
        resident = float((self.kv_tokens[decoding] - self.remaining[decoding]).sum())
        floor = hw.step_floor(resident)
        chunk_step = max(floor, hw.max_batched_tokens / hw.token_rate_per_s)
        prefill_rate = (hw.max_batched_tokens - n_decoding) / chunk_step
        prefill_time = min(max(self.busy_until - start, 0.0), TICK_S)
        prefill_time += self._admit(start, end, floor, prefill_rate, requests)
        requests.generated += self._decode(start, end, floor, chunk_step, min(prefill_time, TICK_S), n_decoding)

    def _admit(self, start: float, end: float, floor: float, prefill_rate: float, requests: _Requests) -> float:
        """Start prefills in arrival order while sequences and KV cache allow; returns busy time in tick."""
        hw = self.hardware
        cursor = max(start, self.busy_until)
        busy = 0.0
        running = len(self.remaining)
        new_remaining: list[float] = []
        new_kv: list[int] = []
        new_first: list[float] = []
        while self.waiting and cursor < end:
            rid = self.waiting[0]
            begin = max(cursor, requests.arrival[rid])
            need = requests.prompt[rid] + requests.output[rid]
            blocked = running >= hw.max_num_seqs or self.kv_reserved + need > hw.kv_capacity_tokens
            if begin >= end or (blocked and running > 0):
                break
            self.waiting.popleft()
            first_token = begin + max(requests.prompt[rid] / prefill_rate, floor)
            requests.queue_wait[rid] = begin - requests.arrival[rid]
            requests.ttft[rid] = first_token - requests.arrival[rid]
            busy += min(first_token, end) - begin
            cursor = first_token
            running += 1
            self.kv_reserved += need
            new_remaining.append(requests.output[rid] - 1)  # the prefill step emits the first token
            new_kv.append(need)
            new_first.append(first_token)
        self.busy_until = max(self.busy_until, cursor)
        if new_remaining:
            self.remaining = np.concatenate([self.remaining, new_remaining])
            self.kv_tokens = np.concatenate([self.kv_tokens, new_kv])
            self.first_token_at = np.concatenate([self.first_token_at, new_first])
        return busy

    def _decode(
        self, start: float, end: float, floor: float, chunk_step: float, prefill_time: float, n_decoding: int
    ) -> float:
        """Generate tokens: one per step, slow steps while prefill chunks run, fast steps after; returns the
        tokens generated."""
        if not len(self.remaining):
            self.gpu_busy_fraction = prefill_time / TICK_S
            return 0.0
        decode_step = max(floor, n_decoding / self.hardware.token_rate_per_s)
        tokens_per_tick = prefill_time / chunk_step + (TICK_S - prefill_time) / decode_step
        active_share = np.clip(end - self.first_token_at, 0.0, TICK_S) / TICK_S
        longest = float((self.remaining * (active_share > 0)).max())
        decode_busy = min(TICK_S - prefill_time, longest / tokens_per_tick * TICK_S)
        self.gpu_busy_fraction = min(1.0, (prefill_time + decode_busy) / TICK_S)
        generated = float(np.minimum(self.remaining, tokens_per_tick * active_share).clip(0.0).sum())
        self.remaining = self.remaining - tokens_per_tick * active_share
        done = self.remaining <= 0
        if done.any():
            self.kv_reserved -= int(self.kv_tokens[done].sum())
            keep = ~done
            self.remaining = self.remaining[keep]
            self.kv_tokens = self.kv_tokens[keep]
            self.first_token_at = self.first_token_at[keep]
        return generated


@dataclass
class SimResult:
    policy: str
    queue_wait_s: np.ndarray  # per request; NaN = never started
    ttft_s: np.ndarray
    horizon_s: int
    gpu_hours: float
    scale_actions: int
    timeline: dict[str, np.ndarray] = field(default_factory=dict)  # per second: replicas, ready, queue


class _Fleet:
    """Replicas that take traffic, replicas being drained, and the router's held requests."""

    def __init__(self, hardware: Hardware, initial: int, routing: str = "random", seed: int = 0):
        self.hardware = hardware
        self.members = [Replica(hardware, ready_at=-math.inf) for _ in range(initial)]
        self.draining: list[Replica] = []
        self.held: deque[int] = deque()
        self.routing = routing
        self.rng = np.random.default_rng(seed)

    def ready(self, now: float) -> list[Replica]:
        return [replica for replica in self.members if replica.ready_at <= now]

    def resize(self, target: int, now: float, cold_start_s: float) -> None:
        while len(self.members) < target:
            self.members.append(Replica(self.hardware, ready_at=now + cold_start_s))
        if len(self.members) > target:
            # Pending Pods go first, then the ready ones with the least work.
            order = sorted(self.members, key=lambda r: (r.ready_at <= now, r.in_flight(), -r.ready_at))
            removed = order[: len(self.members) - target]
            self.members = [replica for replica in self.members if replica not in removed]
            self.draining.extend(r for r in removed if r.ready_at <= now and r.in_flight())

    def dispatch(self, request_ids: range, now: float) -> None:
        targets = self.ready(now)
        if not targets:
            self.held.extend(request_ids)
            return
        pending = [*self.held, *request_ids]
        self.held.clear()
        if self.routing == "random":
            for rid, index in zip(pending, self.rng.integers(0, len(targets), len(pending)), strict=True):
                targets[index].waiting.append(rid)
            return
        loads = [replica.in_flight() for replica in targets]
        for rid in pending:
            index = loads.index(min(loads))
            targets[index].waiting.append(rid)
            loads[index] += 1

    def view(self, now: float) -> ClusterView:
        ready = self.ready(now)
        router = len(self.held) + sum(r.in_flight() for r in self.members + self.draining)
        return ClusterView(
            now=now,
            replicas=len(self.members),
            ready=len(ready),
            starting=len(self.members) - len(ready),
            waiting=sum(len(r.waiting) for r in ready),
            running=sum(len(r.remaining) for r in ready),
            kv_usage=float(np.mean([r.kv_usage() for r in ready])) if ready else None,
            gpu_util=100.0 * float(np.mean([r.gpu_busy_fraction for r in ready])) if ready else None,
            router_in_flight=router,
        )

    def queue_length(self) -> int:
        return len(self.held) + sum(len(r.waiting) for r in self.members + self.draining)

    def idle(self) -> bool:
        return not self.held and not self.draining and all(r.in_flight() == 0 for r in self.members)


def simulate(
    trace: Trace,
    policy: Policy,
    hardware: Hardware,
    settings: SimSettings,
    on_tick: Callable[[ClusterView], None] | None = None,
) -> SimResult:
    """Replay `trace` with `policy` deciding the replica count every `policy.period_s` seconds."""
    requests = _Requests(trace)
    initial = policy.initial_replicas() if settings.initial_replicas is None else settings.initial_replicas
    fleet = _Fleet(hardware, _bounded(initial, settings), settings.routing)
    horizon = math.ceil(trace.duration_s) + 1
    arrival_tick_end = np.searchsorted(trace.arrival_s, np.arange(1, horizon + 1), side="left")
    timeline = {name: np.zeros(horizon) for name in ("replicas", "ready", "gpus", "queue")}
    gpu_seconds = 0.0
    actions = 0
    next_request = 0
    for tick in range(horizon + int(settings.drain_limit_s)):
        now = tick * TICK_S
        if tick >= horizon and fleet.idle():
            break
        if tick < horizon and tick % policy.period_s == 0:
            view = replace(fleet.view(now), **requests.counters(now))
            if on_tick is not None:
                on_tick(view)
            target = _bounded(policy.decide(view), settings)
            if target != len(fleet.members):
                actions += 1
                fleet.resize(target, now, settings.cold_start_s)
        last_request = int(arrival_tick_end[tick]) if tick < horizon else next_request
        fleet.dispatch(range(next_request, last_request), now)
        next_request = last_request
        for replica in fleet.members + fleet.draining:
            if replica.ready_at <= now:
                replica.advance(now, requests)
        fleet.draining = [r for r in fleet.draining if r.in_flight()]
        if tick < horizon:
            gpus = len(fleet.members) + len(fleet.draining)
            gpu_seconds += gpus * TICK_S
            timeline["replicas"][tick] = len(fleet.members)
            timeline["ready"][tick] = len(fleet.ready(now))
            timeline["gpus"][tick] = gpus
            timeline["queue"][tick] = fleet.queue_length()
    return SimResult(policy.name, requests.queue_wait, requests.ttft, horizon, gpu_seconds / 3600.0, actions, timeline)


def _bounded(replicas: int, settings: SimSettings) -> int:
    return min(max(int(replicas), settings.min_replicas), settings.max_replicas)
