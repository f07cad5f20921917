"""python -m bench.autoscale --trace FILE [--speedup N] [--json FILE] [--out DIR] ..."""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.autoscale.calibration import HARDWARE, Hardware
from bench.autoscale.policies import (
    HpaGpuUtilization,
    KedaQueue,
    KubeAI,
    OraclePolicy,
    OurPolicy,
    StaticPolicy,
    misses_per_segment,
    oracle_schedule,
    provisioned_schedule,
)
from bench.autoscale.report import UNATTAINABLE, markdown_table, plot, slo_deadlines, summarize, write_json
from bench.autoscale.simulator import Policy, SimResult, SimSettings, simulate
from bench.autoscale.traces import Trace, load_named
from llm_operator.api.models import LLMServiceSpec
from llm_operator.autoscale.config import policy_config
from llm_operator.autoscale.policy import PolicyConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.autoscale", description=__doc__)
    parser.add_argument("--trace", required=True,
                        help="azure-code, azure-conv, stress:<name> (bench/autoscale/stress.py), or a CSV/JSONL trace")
    parser.add_argument("--speedup", type=float, default=1.0, help="compress time by N (N x the rate)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="directory for table, JSON, PNG")
    parser.add_argument("--cold-start", type=float, default=120.0, help="replica cold start, 45..300 s")
    parser.add_argument("--slo-ttft", type=float, default=2.0,
                        help="TTFT allowance in seconds, on top of each request's own prefill on an idle replica")
    parser.add_argument("--slo-target", type=float, default=0.99, help="share of requests that must meet it")
    parser.add_argument("--gpu", choices=sorted(HARDWARE), default="h100")
    parser.add_argument("--min-replicas", type=int, default=1)
    parser.add_argument("--max-replicas", type=int, default=0,
                        help="0 (default): twice the smallest always-on fleet that meets the SLO")
    parser.add_argument("--token-rate-scale", type=float, default=1.0,
                        help="the simulated GPU's token rate x this (sensitivity: 0.7, 1.3); policies are not told")
    parser.add_argument(
        "--ours-scale-down-delay", type=int, default=0,
        help="also run ours with this spec.autoscaling.scaleDownDelaySeconds (row 'ours-delay-<S>s'); 0: skip",
    )
    args = parser.parse_args(argv)
    if not 45 <= args.cold_start <= 300:
        parser.error("--cold-start must be within 45..300 seconds")
    return args


class Bench:
    def __init__(self, trace: Trace, hardware: Hardware, settings: SimSettings, slo_ttft_s: float, slo_target: float):
        self.trace = trace
        self.hardware = hardware
        self.settings = settings
        self.slo_ttft_s = slo_ttft_s
        self.slo_target = slo_target
        self.deadline_s = slo_deadlines(trace.prompt_tokens, hardware.token_rate_per_s, hardware.step_floor_s,
                                        slo_ttft_s)
        # Wall-clock seconds the oracle's pruning may take (fleets of hundreds simulate slowly); when it runs
        # out the oracle is the best schedule found so far, and `pruning_cut_short` says so.
        self.prune_budget_s = 300.0
        self.pruning_cut_short = False

    def run(self, policy: Policy, warm_start: int | None = None) -> SimResult:
        settings = replace(self.settings, initial_replicas=warm_start)
        return simulate(self.trace, policy, self.hardware, settings)

    def summarize(self, result: SimResult) -> dict[str, float]:
        return summarize(result, self.slo_ttft_s, self.deadline_s)

    def meets_slo(self, result: SimResult) -> bool:
        return self.summarize(result)["slo_attainment"] >= self.slo_target

    def static_peak(self) -> SimResult | None:
        """The smallest always-on fleet within maxReplicas that meets the SLO; None when even maxReplicas
        does not (then no schedule does: more ready replicas never make a request wait longer)."""
        smallest = smallest_static(self, self.settings.min_replicas, self.settings.max_replicas)
        return None if smallest is None else smallest[1]

    def oracle(self, static: SimResult | None = None, segment_s: int = 30, rounds: int = 400) -> SimResult | None:
        """The cheapest schedule found with perfect foresight that meets the SLO; None when none within
        maxReplicas does (`static` None: the static fleet at maxReplicas misses it).

        Ready replicas are chosen per `segment_s` segment. Growth: start from the work each segment brings
        at full utilization, replay, add a replica to the segments whose requests miss the SLO most, just
        enough of them to cover the misses over the SLO's budget, and repeat until it is met (it must be:
        at maxReplicas everywhere it is the static fleet that meets it). Pruning: then take a replica away
        from one segment at a time, most replicas first, keeping each removal that still meets the SLO,
        until no single removal does. Replicas are created one cold start ahead and gaps shorter than a
        cold start are bridged (`provisioned_schedule`), so a removal that changes no GPU-second is not
        tried. The result is a local minimum (no one segment can lose a replica), not a proven global one.
        """
        if static is None:
            return None
        horizon = math.ceil(self.trace.duration_s) + 1
        segments = math.ceil(horizon / segment_s)
        low, high = max(self.settings.min_replicas, 1), self.settings.max_replicas
        start = oracle_schedule(self.trace, self.hardware, 1.0, 0.0, low, high, window_s=segment_s)
        need = np.clip(start[::segment_s][:segments], low, high).astype(np.int64)
        allowed = math.floor((1.0 - self.slo_target) * len(self.trace) + 1e-9)
        result = None
        for _ in range(rounds):
            result = self._follow(need, segment_s, horizon)
            if self.meets_slo(result):
                break
            missed = misses_per_segment(self.trace.arrival_s, result.ttft_s, self.deadline_s, segments, segment_s)
            missed[need >= high] = 0
            if not missed.any():
                need[:] = high  # what is left misses only where the fleet is already at maxReplicas
                continue
            excess, covered = int(missed.sum()) - allowed, 0
            for k in np.argsort(-missed, kind="stable"):
                if covered >= max(excess, 1) or not missed[k]:
                    break
                need[k] += 1
                covered += int(missed[k])
        assert result is not None and self.meets_slo(result), "the growth phase ends at a schedule that meets the SLO"
        need, result = self._prune(need, result, segment_s, horizon)
        best = min([result, static], key=lambda r: r.gpu_hours)
        return replace(best, policy="oracle")

    def _follow(self, need: np.ndarray, segment_s: int, horizon: int) -> SimResult:
        return self.run(OraclePolicy(provisioned_schedule(need, segment_s, horizon, self.settings.cold_start_s)))

    def _prune(self, need: np.ndarray, result: SimResult, segment_s: int, horizon: int) -> tuple[np.ndarray, SimResult]:
        low = max(self.settings.min_replicas, 1)
        current = provisioned_schedule(need, segment_s, horizon, self.settings.cold_start_s).sum()
        deadline = time.monotonic() + self.prune_budget_s
        changed = True
        while changed and time.monotonic() < deadline:
            changed = False
            for k in np.argsort(-need, kind="stable"):
                if need[k] <= low:
                    continue
                if time.monotonic() >= deadline:
                    self.pruning_cut_short = True
                    break
                trial = need.copy()
                trial[k] -= 1
                schedule = provisioned_schedule(trial, segment_s, horizon, self.settings.cold_start_s)
                if schedule.sum() >= current:
                    continue  # bridged by its neighbours: no GPU-second saved
                attempt = self.run(OraclePolicy(schedule))
                if self.meets_slo(attempt):
                    need, result, current, changed = trial, attempt, schedule.sum(), True
        return need, result


def smallest_static(bench: Bench, low: int, high: int) -> tuple[int, SimResult] | None:
    """The smallest always-on replica count in low..high that meets the SLO, with its run (doubling, then
    bisection: more replicas never make a request wait longer); None when `high` does not."""
    low = max(low, 1)
    results: dict[int, SimResult] = {}

    def meets(replicas: int) -> bool:
        results[replicas] = bench.run(StaticPolicy(replicas))
        return bench.meets_slo(results[replicas])

    probe = low
    while not meets(probe):
        if probe >= high:
            return None
        low, probe = probe + 1, min(2 * probe, high)
    while low < probe:
        middle = (low + probe) // 2
        if meets(middle):
            probe = middle
        else:
            low = middle + 1
    return probe, results[probe]


def needed_max_replicas(trace: Trace, hardware: Hardware, settings: SimSettings, slo_ttft_s: float,
                        slo_target: float, ceiling: int = 512) -> int:
    """The default --max-replicas: twice the smallest always-on fleet that meets the SLO (room for a
    reactive policy to overshoot during a burst), or `ceiling` when none up to it does."""
    bench = Bench(trace, hardware, replace(settings, max_replicas=ceiling), slo_ttft_s, slo_target)
    smallest = smallest_static(bench, settings.min_replicas, ceiling)
    return ceiling if smallest is None else max(2 * smallest[0], smallest[0] + 2)


def our_config(settings: SimSettings, **autoscaling: object) -> PolicyConfig:
    """What the operator runs for a vLLM LLMService on one GPU with autoscaling on: an LLMService spec
    through the operator's own spec -> PolicyConfig mapping, with the bench's replica bounds and the API's
    defaults for everything else, unless `autoscaling` sets spec.autoscaling fields."""
    spec = LLMServiceSpec.model_validate({
        "engine": "vllm",
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct", "parameters": "8B"},
        "resources": {"gpus": 1},
        "autoscaling": {"enabled": True, "minReplicas": settings.min_replicas, "maxReplicas": settings.max_replicas,
                        **autoscaling},
    })
    return policy_config(spec)


def our_variants(settings: SimSettings, hardware: Hardware, scale_down_delay_s: int) -> dict[str, PolicyConfig]:
    """`ours` with the API's defaults (no per-model or per-GPU setting); `ours-rate-target`, the previous
    default way, which needs the GPU's prefill rate (spec.autoscaling.targetPromptTokensPerSecond, set to
    the calibrated rate) and has the TTFT target off; and, when `scale_down_delay_s` differs from the
    default, ours with that spec.autoscaling.scaleDownDelaySeconds."""
    variants = {
        "ours": our_config(settings),
        "ours-rate-target": our_config(settings, targetPromptTokensPerSecond=int(hardware.token_rate_per_s),
                                       targetTimeToFirstTokenSeconds=0),
    }
    if scale_down_delay_s and scale_down_delay_s != variants["ours"].scale_down_delay_s:
        variants[f"ours-delay-{scale_down_delay_s}s"] = our_config(settings, scaleDownDelaySeconds=scale_down_delay_s)
    return variants


def run_all(bench: Bench, configs: dict[str, PolicyConfig]) -> dict[str, SimResult | str]:
    """Every policy on the same trace; the adaptive ones start warm with the static-peak fleet (or with
    maxReplicas when no static fleet meets the SLO, and then the oracle row says it is unattainable)."""
    low, high = bench.settings.min_replicas, bench.settings.max_replicas
    started = time.perf_counter()
    static = bench.static_peak()
    results: dict[str, SimResult | str] = {"static-peak": static if static is not None else UNATTAINABLE}
    warm = int(static.timeline["gpus"][0]) if static is not None else high
    for name, make in [
        ("hpa-gpu-util", lambda: bench.run(HpaGpuUtilization(low, high), warm)),
        ("keda-queue", lambda: bench.run(KedaQueue(low, high), warm)),
        ("kubeai", lambda: bench.run(KubeAI(low, high), warm)),
        *[(name, lambda c=config: bench.run(OurPolicy(c), warm)) for name, config in configs.items()],
    ]:
        results[name] = make()
    oracle = bench.oracle(static)
    results["oracle"] = oracle if oracle is not None else UNATTAINABLE
    print(f"  simulated in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    trace = load_named(args.trace, speedup=args.speedup)
    hardware = scaled(HARDWARE[args.gpu], args.token_rate_scale)
    settings = SimSettings(cold_start_s=args.cold_start, min_replicas=args.min_replicas)
    max_replicas = args.max_replicas or needed_max_replicas(trace, hardware, settings, args.slo_ttft, args.slo_target)
    settings = replace(settings, max_replicas=max_replicas)
    bench = Bench(trace, hardware, settings, args.slo_ttft, args.slo_target)
    print(f"{trace.name}: {len(trace)} requests over {trace.duration_s / 60:.0f} min on {args.gpu}, "
          f"maxReplicas {max_replicas}", file=sys.stderr)
    results = run_all(bench, our_variants(settings, HARDWARE[args.gpu], args.ours_scale_down_delay))
    summaries = {name: bench.summarize(r) if isinstance(r, SimResult) else r for name, r in results.items()}
    table = markdown_table(summaries, args.slo_ttft, args.slo_target)
    print(table)

    stem = f"{trace.name}-{args.gpu}" + (f"-x{args.speedup:g}" if args.speedup != 1 else "")
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "trace": str(args.trace),
        "requests": len(trace),
        "gpu": args.gpu,
        "token_rate_scale": args.token_rate_scale,
        "speedup": args.speedup,
        "cold_start_s": args.cold_start,
        "slo_ttft_s": args.slo_ttft,
        "slo_target": args.slo_target,
        "min_replicas": args.min_replicas,
        "max_replicas": max_replicas,
        "ours_scale_down_delay_s": args.ours_scale_down_delay,
    }
    (args.out / f"{stem}.md").write_text(f"## {stem}\n\n{table}\n")
    write_json(summaries, args.out / f"{stem}.json", meta)
    if args.json:
        write_json(summaries, args.json, meta)
    title = f"{trace.name} on {args.gpu}, cold start {args.cold_start:g} s: GPUs held (blue), queue (red)"
    plot({name: r for name, r in results.items() if isinstance(r, SimResult)}, args.out / f"{stem}.png", title)
    return 0


def scaled(hardware: Hardware, token_rate_scale: float) -> Hardware:
    """The simulated GPU with its batched-token rate scaled (the sensitivity runs): what the policies
    are told about the GPU does not change, only what it really does."""
    if token_rate_scale == 1.0:
        return hardware
    return replace(hardware, token_rate_per_s=hardware.token_rate_per_s * token_rate_scale)


if __name__ == "__main__":
    raise SystemExit(main())
