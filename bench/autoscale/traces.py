"""Request traces: Azure LLM inference CSV or JSONL, as numpy arrays."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Trace:
    name: str
    arrival_s: np.ndarray  # float64, sorted, first request at 0
    prompt_tokens: np.ndarray  # int64
    output_tokens: np.ndarray  # int64, at least 1

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def duration_s(self) -> float:
        return float(self.arrival_s[-1]) if len(self) else 0.0


def make_trace(name: str, arrival_s, prompt_tokens, output_tokens, speedup: float = 1.0) -> Trace:
    """Sort by arrival, start the clock at the first request and compress time by `speedup`."""
    arrival = np.asarray(arrival_s, dtype=np.float64)
    order = np.argsort(arrival, kind="stable")
    arrival = arrival[order]
    if len(arrival):
        arrival = (arrival - arrival[0]) / speedup
    prompt = np.maximum(np.asarray(prompt_tokens, dtype=np.int64)[order], 1)
    output = np.maximum(np.asarray(output_tokens, dtype=np.int64)[order], 1)
    return Trace(name, arrival, prompt, output)


def _azure_timestamp(text: str) -> float:
    # "2023-11-16 18:17:03.9799600": seven fractional digits, which fromisoformat rejects.
    date, _, fraction = text.strip().partition(".")
    return datetime.fromisoformat(date).timestamp() + float(f"0.{fraction or 0}")


def read_azure_csv(path: Path) -> tuple[list[float], list[int], list[int]]:
    arrivals, prompts, outputs = [], [], []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            arrivals.append(_azure_timestamp(row["TIMESTAMP"]))
            prompts.append(int(row["ContextTokens"]))
            outputs.append(int(row["GeneratedTokens"]))
    return arrivals, prompts, outputs


def read_jsonl(path: Path) -> tuple[list[float], list[int], list[int]]:
    """One object a line: `timestamp` in milliseconds, `input_length`, `output_length`."""
    arrivals, prompts, outputs = [], [], []
    with path.open() as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                arrivals.append(float(record["timestamp"]) / 1000.0)
                prompts.append(int(record["input_length"]))
                outputs.append(int(record["output_length"]))
    return arrivals, prompts, outputs


def load_trace(path: str | Path, speedup: float = 1.0) -> Trace:
    path = Path(path)
    reader = read_jsonl if path.suffix in {".jsonl", ".json"} else read_azure_csv
    return make_trace(path.stem, *reader(path), speedup=speedup)


DATA = Path(__file__).resolve().parents[1] / "data"
AZURE = {"azure-code": DATA / "AzureLLMInferenceTrace_code.csv", "azure-conv": DATA / "AzureLLMInferenceTrace_conv.csv"}


def load_named(spec: str | Path, speedup: float = 1.0) -> Trace:
    """`azure-code`, `azure-conv`, `stress:<generator>` (bench/autoscale/stress.py) or a trace file."""
    text = str(spec)
    if text in AZURE:
        return load_trace(AZURE[text], speedup)
    if text.startswith("stress:"):
        from bench.autoscale.stress import generate  # stress builds on this module

        trace = generate(text.removeprefix("stress:"))
        return trace if speedup == 1.0 else make_trace(trace.name, trace.arrival_s, trace.prompt_tokens,
                                                       trace.output_tokens, speedup)
    return load_trace(text, speedup)
