"""Every trace x GPU x cold start x policy in one table: the run that shows whether a policy holds on
traffic it was not tuned on.

    python -m bench.autoscale.matrix [--traces azure-code,stress:flash-crowd,...] [--gpus h100,a100]
        [--cold-starts 60,120,300] [--sensitivity 0.7,1.3] [--jobs 2] [--out bench/results]

Traces: the two Azure 2023 traces and the five seeded stress traces of `bench/autoscale/stress.py`. The
sensitivity runs repeat cold start 120 s with the simulated GPU's token rate scaled (policies are told
the calibrated rate, as a user would configure it). Writes `autoscale-matrix.md` and `.json` to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from bench.autoscale.__main__ import Bench, needed_max_replicas, our_variants, run_all, scaled
from bench.autoscale.calibration import HARDWARE
from bench.autoscale.report import UNATTAINABLE
from bench.autoscale.simulator import SimResult, SimSettings
from bench.autoscale.stress import GENERATORS
from bench.autoscale.traces import AZURE, load_named

ALL_TRACES = [*AZURE, *(f"stress:{name}" for name in GENERATORS)]
SLO_ALLOWANCE_S = 2.0
SLO_TARGET = 0.99
# Seconds the oracle's pruning may take per case (70 cases on 2 cores); the table marks a cut-short one.
ORACLE_PRUNE_BUDGET_S = 60.0


@dataclass(frozen=True)
class Case:
    trace: str
    gpu: str
    cold_start_s: float
    token_rate_scale: float = 1.0

    @property
    def label(self) -> str:
        scale = "" if self.token_rate_scale == 1.0 else f", rate x{self.token_rate_scale:g}"
        return f"{self.trace} | {self.gpu} | {self.cold_start_s:g} s{scale}"


def run_case(case: Case) -> dict:
    trace = load_named(case.trace)
    hardware = scaled(HARDWARE[case.gpu], case.token_rate_scale)
    settings = SimSettings(cold_start_s=case.cold_start_s, min_replicas=1)
    max_replicas = needed_max_replicas(trace, hardware, settings, SLO_ALLOWANCE_S, SLO_TARGET)
    settings = replace(settings, max_replicas=max_replicas)
    bench = Bench(trace, hardware, settings, SLO_ALLOWANCE_S, SLO_TARGET)
    bench.prune_budget_s = ORACLE_PRUNE_BUDGET_S
    started = time.perf_counter()
    results = run_all(bench, our_variants(settings, HARDWARE[case.gpu], 0))
    summaries = {name: bench.summarize(r) if isinstance(r, SimResult) else r for name, r in results.items()}
    return {"case": case.__dict__, "label": case.label, "max_replicas": max_replicas,
            "oracle_pruning_cut_short": bench.pruning_cut_short,
            "seconds": round(time.perf_counter() - started, 1), "policies": summaries}


def cell(summary: dict | str) -> str:
    if not isinstance(summary, dict):
        return str(summary)
    mark = "" if summary["slo_attainment"] >= SLO_TARGET else " ✗"
    return f"{summary['gpu_hours']:.2f}, {summary['slo_attainment']:.2%}{mark}"


def verdict(policies: dict[str, dict | str], ours: str = "ours") -> str:
    """Whether ours meets the SLO, costs no more than any baseline that meets it, and is within 1.15x of
    the oracle."""
    mine = policies[ours]
    if not isinstance(mine, dict):
        return "-"
    notes = []
    if mine["slo_attainment"] < SLO_TARGET:
        notes.append("misses SLO")
    cheaper = [name for name, s in policies.items() if name not in (ours, "oracle") and isinstance(s, dict)
               and s["slo_attainment"] >= SLO_TARGET and s["gpu_hours"] < mine["gpu_hours"] - 1e-9]
    if cheaper:
        notes.append("dearer than " + ", ".join(cheaper))
    oracle = policies.get("oracle")
    if isinstance(oracle, dict):
        ratio = mine["gpu_hours"] / oracle["gpu_hours"]
        notes.append(f"{ratio:.2f}x oracle" + ("" if ratio <= 1.15 else " (> 1.15)"))
    elif oracle == UNATTAINABLE:
        notes.append("SLO unattainable")
    return "; ".join(notes) or "ok"


def table(rows: list[dict]) -> str:
    policies = list(rows[0]["policies"])
    header = ["trace | GPU | cold start", "max", *policies, "ours: verdict"]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---", "---", "---", "---:", *["---:"] * len(policies), "---"]) + "|"]
    for row in rows:
        oracle_note = " (oracle pruning cut short)" if row.get("oracle_pruning_cut_short") else ""
        lines.append("| " + " | ".join([row["label"], str(row["max_replicas"]),
                                        *(cell(row["policies"][p]) for p in policies),
                                        verdict(row["policies"]) + oracle_note]) + " |")
    note = (f"Cells: GPU-hours, length-aware SLO attainment (TTFT <= {SLO_ALLOWANCE_S:g} s + own prefill on an idle "
            f"replica, target {SLO_TARGET:.0%}); ✗ = misses it. max = the default maxReplicas, twice the smallest "
            "always-on fleet that meets the SLO.")
    return "\n".join([*lines, "", note])


def cases(args: argparse.Namespace) -> list[Case]:
    found = [Case(trace, gpu, cold) for trace in args.traces for gpu in args.gpus for cold in args.cold_starts]
    found += [Case(trace, gpu, 120.0, scale) for scale in args.sensitivity for trace in args.traces
              for gpu in args.gpus]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.autoscale.matrix", description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=lambda v: v.split(","), default=ALL_TRACES)
    parser.add_argument("--gpus", type=lambda v: v.split(","), default=["h100", "a100"])
    parser.add_argument("--cold-starts", type=lambda v: [float(x) for x in v.split(",")], default=[60.0, 120.0, 300.0])
    parser.add_argument("--sensitivity", type=lambda v: [float(x) for x in v.split(",") if x], default=[0.7, 1.3])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--name", default="autoscale-matrix")
    args = parser.parse_args(argv)
    todo = cases(args)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        rows = []
        for row in pool.map(run_case, todo):
            rows.append(row)
            print(f"{row['label']}: {row['seconds']} s; ours {cell(row['policies']['ours'])}; "
                  f"{verdict(row['policies'])}", file=sys.stderr, flush=True)
    text = table(rows)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.md").write_text(text + "\n")
    meta = {"slo_allowance_s": SLO_ALLOWANCE_S, "slo_target": SLO_TARGET,
            "wall_seconds": round(time.perf_counter() - started, 1)}
    (args.out / f"{args.name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
