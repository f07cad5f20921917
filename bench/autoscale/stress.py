"""Seeded generators of stress traces: shapes of traffic the policy was not tuned on.

Each generator returns a `Trace` of about an hour; the same seed gives the same trace. Arrivals are a
non-homogeneous Poisson process (thinning of a homogeneous one at the peak rate), so every shape keeps
the burstiness of independent users on top of its own rate curve. Lengths are log-normal, the usual fit
for LLM prompt and output lengths (the Azure 2023 traces, BurstGPT), clipped to a context window.

- `prefill-heavy`: long-context requests (mean prompt about 12k tokens, a tail past 100k), 3.4 requests/s
  on average with bursts of about twice that rate: the shape of a RAG or code-review service.
- `decode-heavy`: short prompts (about 300 tokens) with long answers (about 2000, up to 8k) at about
  11 requests/s: a generation service whose limit is the KV cache and the batch, not prefill.
- `diurnal`: a day compressed into the hour, from a trough of 0.4 to a peak of 8 requests/s and back.
- `flash-crowd`: 1 request/s, then ten times that within 30 s at minute 20, held 5 minutes, then decaying.
- `on-off`: 4-minute sessions of 4 requests/s separated by idle gaps of 8 to 15 minutes (scale to zero).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from bench.autoscale.traces import Trace, make_trace

HOUR_S = 3600.0
CONTEXT_TOKENS = 128_000


def arrivals(rate: Callable[[np.ndarray], np.ndarray], peak: float, duration_s: float,
             rng: np.random.Generator) -> np.ndarray:
    """Poisson arrivals with time-varying `rate` (requests/s, at most `peak`), by thinning."""
    count = rng.poisson(peak * duration_s)
    candidates = np.sort(rng.uniform(0.0, duration_s, count))
    keep = rng.uniform(0.0, peak, count) < rate(candidates)
    return candidates[keep]


def lognormal_tokens(rng: np.random.Generator, size: int, mean: float, sigma: float, low: int,
                     high: int) -> np.ndarray:
    """Log-normal lengths with the given mean (not median) and shape, clipped to [low, high]."""
    mu = math.log(mean) - sigma**2 / 2
    return np.clip(rng.lognormal(mu, sigma, size), low, high).astype(np.int64)


def bursty_rate(base: float, burst_factor: float, rng: np.random.Generator, duration_s: float,
                burst_s: float = 60.0, bursts_per_hour: float = 12.0) -> tuple[Callable, float]:
    """`base` requests/s with bursts of `burst_factor` x base lasting about `burst_s` seconds."""
    starts = np.sort(rng.uniform(0.0, duration_s, rng.poisson(bursts_per_hour * duration_s / HOUR_S)))
    lengths = rng.exponential(burst_s, len(starts))

    def rate(t: np.ndarray) -> np.ndarray:
        inside = ((t[:, None] >= starts) & (t[:, None] < starts + lengths)).any(axis=1) if len(starts) else False
        return np.where(inside, base * burst_factor, base)

    return rate, base * burst_factor


def prefill_heavy(seed: int = 1) -> Trace:
    rng = np.random.default_rng(seed)
    # 2.9/s between bursts and 2x in them gives about 3.4/s on average.
    rate, peak = bursty_rate(2.9, 2.0, rng, HOUR_S, burst_s=120.0, bursts_per_hour=10.0)
    times = arrivals(rate, peak, HOUR_S, rng)
    prompts = lognormal_tokens(rng, len(times), mean=12_000, sigma=1.1, low=256, high=CONTEXT_TOKENS - 1024)
    outputs = lognormal_tokens(rng, len(times), mean=350, sigma=0.8, low=1, high=1024)
    return make_trace("stress-prefill-heavy", times, prompts, outputs)


def decode_heavy(seed: int = 2) -> Trace:
    rng = np.random.default_rng(seed)
    rate, peak = bursty_rate(10.0, 1.6, rng, HOUR_S)
    times = arrivals(rate, peak, HOUR_S, rng)
    prompts = lognormal_tokens(rng, len(times), mean=300, sigma=0.7, low=8, high=4096)
    outputs = lognormal_tokens(rng, len(times), mean=2000, sigma=0.6, low=16, high=8192)
    return make_trace("stress-decode-heavy", times, prompts, outputs)


def diurnal(seed: int = 3) -> Trace:
    rng = np.random.default_rng(seed)
    trough, crest = 0.4, 8.0

    def rate(t: np.ndarray) -> np.ndarray:  # one cosine period: trough at the ends, crest at half an hour
        return trough + (crest - trough) * (1 - np.cos(2 * math.pi * t / HOUR_S)) / 2

    times = arrivals(rate, crest, HOUR_S, rng)
    prompts = lognormal_tokens(rng, len(times), mean=1_500, sigma=1.0, low=16, high=32_000)
    outputs = lognormal_tokens(rng, len(times), mean=250, sigma=0.9, low=1, high=2048)
    return make_trace("stress-diurnal", times, prompts, outputs)


def flash_crowd(seed: int = 4) -> Trace:
    rng = np.random.default_rng(seed)
    base, factor, start, ramp, hold, decay = 1.0, 10.0, 1200.0, 30.0, 300.0, 300.0

    def rate(t: np.ndarray) -> np.ndarray:
        rising = np.clip((t - start) / ramp, 0.0, 1.0)
        falling = np.clip(1.0 - (t - start - ramp - hold) / decay, 0.0, 1.0)
        return base * (1.0 + (factor - 1.0) * np.minimum(rising, falling))

    times = arrivals(rate, base * factor, HOUR_S, rng)
    prompts = lognormal_tokens(rng, len(times), mean=2_000, sigma=1.0, low=16, high=32_000)
    outputs = lognormal_tokens(rng, len(times), mean=300, sigma=0.9, low=1, high=2048)
    return make_trace("stress-flash-crowd", times, prompts, outputs)


def on_off(seed: int = 5) -> Trace:
    rng = np.random.default_rng(seed)
    sessions, t = [], rng.uniform(60.0, 300.0)
    while t < HOUR_S:
        sessions.append((t, t + 240.0))
        t += 240.0 + rng.uniform(480.0, 900.0)
    on = np.array(sessions)
    level = 4.0

    def rate(times: np.ndarray) -> np.ndarray:
        inside = ((times[:, None] >= on[:, 0]) & (times[:, None] < on[:, 1])).any(axis=1)
        return np.where(inside, level, 0.0)

    times = arrivals(rate, level, HOUR_S, rng)
    prompts = lognormal_tokens(rng, len(times), mean=1_000, sigma=1.0, low=16, high=16_000)
    outputs = lognormal_tokens(rng, len(times), mean=300, sigma=0.9, low=1, high=2048)
    # Keep the hour: the trace starts at its first request, so an idle start would be cut off.
    return make_trace("stress-on-off", np.concatenate([[0.0], times]), np.concatenate([[16], prompts]),
                      np.concatenate([[1], outputs]))


GENERATORS: dict[str, Callable[[int], Trace]] = {
    "prefill-heavy": prefill_heavy,
    "decode-heavy": decode_heavy,
    "diurnal": diurnal,
    "flash-crowd": flash_crowd,
    "on-off": on_off,
}


def generate(name: str, seed: int | None = None) -> Trace:
    """The stress trace `name` (a key of GENERATORS) with its default seed, or `seed`."""
    generator = GENERATORS[name]
    return generator() if seed is None else generator(seed)
