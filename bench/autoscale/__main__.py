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
from bench.autoscale.report import markdown_table, plot, summarize, write_json
from bench.autoscale.simulator import Policy, SimResult, SimSettings, simulate
from bench.autoscale.traces import Trace, load_trace
from llm_operator.api.models import LLMServiceSpec
from llm_operator.autoscale.config import policy_config
from llm_operator.autoscale.policy import PolicyConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.autoscale", description=__doc__)
    parser.add_argument("--trace", required=True, type=Path, help="Azure CSV or JSONL request trace")
    parser.add_argument("--speedup", type=float, default=1.0, help="compress time by N (N x the rate)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="directory for table, JSON, PNG")
    parser.add_argument("--cold-start", type=float, default=120.0, help="replica cold start, 45..300 s")
    parser.add_argument("--slo-ttft", type=float, default=2.0, help="TTFT objective in seconds")
    parser.add_argument("--slo-target", type=float, default=0.99, help="share of requests that must meet it")
    parser.add_argument("--gpu", choices=sorted(HARDWARE), default="h100")
    parser.add_argument("--min-replicas", type=int, default=1)
    parser.add_argument("--max-replicas", type=int, default=12)
    parser.add_argument(
        "--ours-scale-down-delay", type=int, default=900,
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

    def run(self, policy: Policy, warm_start: int | None = None) -> SimResult:
        settings = replace(self.settings, initial_replicas=warm_start)
        return simulate(self.trace, policy, self.hardware, settings)

    def meets_slo(self, result: SimResult) -> bool:
        return summarize(result, self.slo_ttft_s)["slo_attainment"] >= self.slo_target

    def static_peak(self) -> SimResult:
        """The smallest always-on fleet that meets the SLO over the whole trace."""
        result = None
        for replicas in range(self.settings.min_replicas, self.settings.max_replicas + 1):
            result = self.run(StaticPolicy(max(replicas, 1)))
            if self.meets_slo(result):
                break
        assert result is not None
        return result

    def oracle(self, static: SimResult | None = None, segment_s: int = 30, rounds: int = 40) -> SimResult:
        """The cheapest perfect-foresight schedule found that meets the SLO.

        Ready replicas are chosen per `segment_s` segment by simulation: start from the work each
        segment brings at full utilization (too few), replay the trace, add one replica to the
        segments whose requests miss the objective most, just enough of them to cover the misses
        over the SLO's budget, and repeat. Replicas are created one cold start ahead
        (`provisioned_schedule`). Two other schedules compete: the static-peak fleet and the
        older work-model family (`oracle_schedule`, utilization bisected); the cheapest that meets
        the SLO is the oracle, so it never costs more than static-peak.
        """
        candidates = [result for result in (static, self._work_model_oracle()) if result is not None]
        horizon = math.ceil(self.trace.duration_s) + 1
        segments = math.ceil(horizon / segment_s)
        low, high = self.settings.min_replicas, self.settings.max_replicas
        start = oracle_schedule(self.trace, self.hardware, 1.0, 0.0, low, high, window_s=segment_s)
        need = np.maximum(start[::segment_s][:segments], max(low, 1))
        allowed = math.floor((1.0 - self.slo_target) * len(self.trace) + 1e-9)
        best = min(candidates, key=lambda result: result.gpu_hours, default=None)
        for _ in range(rounds):
            schedule = provisioned_schedule(need, segment_s, horizon, self.settings.cold_start_s)
            result = self.run(OraclePolicy(schedule))
            if self.meets_slo(result):
                if best is None or result.gpu_hours < best.gpu_hours:
                    best = result
                break
            missed = misses_per_segment(self.trace.arrival_s, result.ttft_s, self.slo_ttft_s, segments, segment_s)
            excess = int(missed.sum()) - allowed
            missed[need >= high] = 0  # at maxReplicas already
            if not missed.any():
                break
            covered = 0
            for k in np.argsort(-missed, kind="stable"):
                if covered >= excess or not missed[k]:
                    break
                need[k] += 1
                covered += int(missed[k])
            if best is not None and result.gpu_hours >= best.gpu_hours:
                break  # already dearer than a schedule that meets the SLO
        if best is None:
            raise RuntimeError("no oracle schedule meets the SLO within maxReplicas")
        return replace(best, policy="oracle")

    def _work_model_oracle(self, steps: int = 7) -> SimResult | None:
        """`oracle_schedule` at the highest utilization (bisected) that meets the SLO, if any."""
        best, low, high = None, 0.05, 1.0
        for _ in range(steps):
            utilization = (low + high) / 2
            schedule = oracle_schedule(
                self.trace, self.hardware, utilization, self.settings.cold_start_s, *self._bounds()
            )
            result = self.run(OraclePolicy(schedule))
            if self.meets_slo(result):
                best, low = result, utilization
            else:
                high = utilization
        return best

    def _bounds(self) -> tuple[int, int]:
        return self.settings.min_replicas, self.settings.max_replicas


def our_config(settings: SimSettings, hardware: Hardware, scale_down_delay_s: int | None = None) -> PolicyConfig:
    """What the operator runs for a vLLM LLMService on one GPU with autoscaling on: an LLMService spec
    through the operator's own spec -> PolicyConfig mapping, with the bench's replica bounds and
    `targetPromptTokensPerSecond` set to the GPU's calibrated prefill rate (what a user measures for the
    model on the GPU); everything else at the API's defaults unless `scale_down_delay_s` is given."""
    autoscaling: dict[str, object] = {
        "enabled": True, "minReplicas": settings.min_replicas, "maxReplicas": settings.max_replicas,
        "targetPromptTokensPerSecond": int(hardware.token_rate_per_s),
    }
    if scale_down_delay_s is not None:
        autoscaling["scaleDownDelaySeconds"] = scale_down_delay_s
    spec = LLMServiceSpec.model_validate({
        "engine": "vllm",
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct", "parameters": "8B"},
        "resources": {"gpus": 1},
        "autoscaling": autoscaling,
    })
    return policy_config(spec)


def our_variants(settings: SimSettings, hardware: Hardware, scale_down_delay_s: int) -> dict[str, PolicyConfig]:
    """`ours` with the API's defaults, plus the same LLMService with a longer scale-down delay, the one
    setting a user tunes for a bursty service (spec.autoscaling.scaleDownDelaySeconds); 0: no extra row."""
    variants = {"ours": our_config(settings, hardware)}
    if scale_down_delay_s and scale_down_delay_s != variants["ours"].scale_down_delay_s:
        variants[f"ours-delay-{scale_down_delay_s}s"] = our_config(settings, hardware, scale_down_delay_s)
    return variants


def run_all(bench: Bench, configs: dict[str, PolicyConfig]) -> dict[str, SimResult]:
    """Every policy on the same trace; the adaptive ones start with the static-peak fleet (warm)."""
    low, high = bench.settings.min_replicas, bench.settings.max_replicas
    started = time.perf_counter()
    results = {"static-peak": bench.static_peak()}
    warm = int(results["static-peak"].timeline["gpus"][0])
    for name, make in [
        ("hpa-gpu-util", lambda: bench.run(HpaGpuUtilization(low, high), warm)),
        ("keda-queue", lambda: bench.run(KedaQueue(low, high), warm)),
        ("kubeai", lambda: bench.run(KubeAI(low, high), warm)),
        *[(name, lambda c=config: bench.run(OurPolicy(c), warm)) for name, config in configs.items()],
        ("oracle", lambda: bench.oracle(results["static-peak"])),
    ]:
        results[name] = make()
    print(f"  simulated in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    trace = load_trace(args.trace, speedup=args.speedup)
    settings = SimSettings(cold_start_s=args.cold_start, min_replicas=args.min_replicas, max_replicas=args.max_replicas)
    bench = Bench(trace, HARDWARE[args.gpu], settings, args.slo_ttft, args.slo_target)
    print(f"{trace.name}: {len(trace)} requests over {trace.duration_s / 60:.0f} min on {args.gpu}", file=sys.stderr)
    results = run_all(bench, our_variants(settings, bench.hardware, args.ours_scale_down_delay))
    summaries = {name: summarize(result, args.slo_ttft) for name, result in results.items()}
    table = markdown_table(summaries, args.slo_ttft, args.slo_target)
    print(table)

    stem = f"{trace.name}-{args.gpu}" + (f"-x{args.speedup:g}" if args.speedup != 1 else "")
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "trace": args.trace.name,
        "requests": len(trace),
        "gpu": args.gpu,
        "speedup": args.speedup,
        "cold_start_s": args.cold_start,
        "slo_ttft_s": args.slo_ttft,
        "slo_target": args.slo_target,
        "min_replicas": args.min_replicas,
        "max_replicas": args.max_replicas,
        "ours_scale_down_delay_s": args.ours_scale_down_delay,
    }
    (args.out / f"{stem}.md").write_text(f"## {stem}\n\n{table}\n")
    write_json(summaries, args.out / f"{stem}.json", meta)
    if args.json:
        write_json(summaries, args.json, meta)
    title = f"{trace.name} on {args.gpu}, cold start {args.cold_start:g} s: GPUs held (blue), queue (red)"
    plot(results, args.out / f"{stem}.png", title)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
