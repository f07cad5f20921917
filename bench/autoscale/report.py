"""Figures per policy: a table, JSON and one plot of replicas and queue length over time."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from bench.autoscale.simulator import SimResult

PERCENTILES = (50, 95, 99)


def summarize(result: SimResult, slo_ttft_s: float, deadline_s: np.ndarray | None = None) -> dict[str, float]:
    """The figures of one run; a request never served counts as an infinite wait and TTFT.

    `slo_attainment` is the length-aware SLO: the share of requests whose TTFT is within `deadline_s`
    (per request: the allowance plus its own prefill on an idle replica, see `slo_deadlines`);
    `ttft_attainment` the fixed one, TTFT <= `slo_ttft_s`. Without `deadline_s` both are the fixed one.
    """
    ttft = np.nan_to_num(result.ttft_s, nan=math.inf)
    wait = np.nan_to_num(result.queue_wait_s, nan=math.inf)
    hours = result.horizon_s / 3600.0
    deadline = np.full(len(ttft), slo_ttft_s) if deadline_s is None else deadline_s
    summary = {
        "gpu_hours": round(result.gpu_hours, 3),
        "slo_attainment": round(float(np.mean(ttft <= deadline)), 4),
        "ttft_attainment": round(float(np.mean(ttft <= slo_ttft_s)), 4),
        "scale_actions_per_hour": round(result.scale_actions / hours, 1),
        "mean_replicas": round(float(result.timeline["gpus"].mean()), 2),
        "peak_replicas": int(result.timeline["gpus"].max()),
        "unserved_requests": int(np.isnan(result.ttft_s).sum()),
    }
    for p in PERCENTILES:
        summary[f"p{p}_ttft_s"] = _rounded(np.percentile(ttft, p))
        summary[f"p{p}_queue_wait_s"] = _rounded(np.percentile(wait, p))
    return summary


def slo_deadlines(prompt_tokens: np.ndarray, token_rate_per_s: float, step_floor_s: float,
                  allowance_s: float) -> np.ndarray:
    """Per request, the TTFT the length-aware SLO allows: `allowance_s` plus the request's own prefill
    on an idle replica (its prompt at the full batched-token rate, at least one engine step), which no
    autoscaler can remove."""
    return allowance_s + np.maximum(prompt_tokens / token_rate_per_s, step_floor_s)


def _rounded(value: float) -> float | None:
    return None if not math.isfinite(value) else round(float(value), 3)


COLUMNS = [
    ("policy", "policy"),
    ("gpu_hours", "GPU-h"),
    ("vs_oracle", "vs oracle"),
    ("slo_attainment", "SLO"),
    ("ttft_attainment", "TTFT<=allowance"),
    ("p50_ttft_s", "TTFT p50"),
    ("p95_ttft_s", "TTFT p95"),
    ("p99_ttft_s", "TTFT p99"),
    ("p50_queue_wait_s", "wait p50"),
    ("p95_queue_wait_s", "wait p95"),
    ("p99_queue_wait_s", "wait p99"),
    ("scale_actions_per_hour", "actions/h"),
    ("peak_replicas", "peak"),
]


UNATTAINABLE = "unattainable"


def markdown_table(summaries: dict[str, dict | str], slo_ttft_s: float, slo_target: float) -> str:
    """One row per policy; a policy whose value is UNATTAINABLE (the oracle when no schedule within
    maxReplicas meets the SLO) gets a row that says so."""
    oracle = summaries.get("oracle")
    oracle_hours = oracle.get("gpu_hours") if isinstance(oracle, dict) else None
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "|".join("---" if key == "policy" else "---:" for key, _ in COLUMNS) + "|",
    ]
    for name, summary in summaries.items():
        if not isinstance(summary, dict):
            lines.append("| " + " | ".join([f"{name}: {summary}", *[""] * (len(COLUMNS) - 1)]) + " |")
            continue
        cells = []
        for key, _ in COLUMNS:
            if key == "policy":
                met = summary["slo_attainment"] >= slo_target
                cells.append(f"{name}{'' if met else ' (misses SLO)'}")
            elif key == "vs_oracle":
                cells.append(f"{summary['gpu_hours'] / oracle_hours - 1:+.0%}" if oracle_hours else "")
            elif key in ("slo_attainment", "ttft_attainment"):
                cells.append(f"{summary[key]:.2%}")
            else:
                cells.append(_cell(summary[key]))
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        f"SLO: at least {slo_target:.0%} of requests have TTFT <= {slo_ttft_s:g} s + their own prefill on an "
        f"idle replica (length-aware); TTFT<=allowance: the share with TTFT <= {slo_ttft_s:g} s flat. Times in "
        "seconds; '-' = some requests never served."
    )
    return "\n".join([*lines, "", note])


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def write_json(summaries: dict[str, dict | str], path: Path, meta: dict) -> None:
    payload = {"meta": meta, **summaries}
    path.write_text(json.dumps(payload, indent=2) + "\n")


def plot(results: dict[str, SimResult], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(11, 1.9 * len(results)), sharex=True, squeeze=False)
    peak = max(int(r.timeline["gpus"].max()) for r in results.values())
    for axis, (name, result) in zip(axes[:, 0], results.items(), strict=True):
        minutes = np.arange(result.horizon_s) / 60.0
        axis.step(minutes, result.timeline["gpus"], where="post", color="tab:blue", label="GPUs held")
        axis.step(minutes, result.timeline["ready"], where="post", color="tab:green", lw=0.8, label="ready")
        axis.set_ylim(0, peak + 0.5)
        axis.set_ylabel("replicas")
        axis.set_title(f"{name}: {result.gpu_hours:.2f} GPU-h", fontsize=9, loc="left")
        queue_axis = axis.twinx()
        queue_axis.fill_between(minutes, result.timeline["queue"], color="tab:red", alpha=0.3, lw=0)
        queue_axis.set_ylabel("queued", color="tab:red")
    axes[0, 0].legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("minutes")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
