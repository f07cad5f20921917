"""Added latency and throughput of the LiteLLM router, on loopback.

    python -m bench.router_overhead [--requests 300] [--backend-delay-ms 20] [--concurrency 1,16,64] [--repeat 3]
                                    [--variants operator,uvicorn-1w,...] [--json FILE] [--md FILE]

Starts the OpenAI-compatible stand-in (tests/e2e/standin.py, answering after --backend-delay-ms) and, one
after the other, the real LiteLLM proxy (the venv of hack/install-litellm.sh) in each configuration, with the
config.yaml the operator generates (only `api_base` rewritten to the stand-in). At each concurrency, N
keep-alive clients (aiohttp) send non-streaming chat completions, first to the stand-in directly, then
through each proxy; a level stops after --requests requests or --max-seconds and runs --repeat times (the
median-throughput run is reported, with every run's req/s). Reports p50/p99 latency,
requests/s, the added latency (proxy minus direct) at p50/p99, and the proxy's CPU time per request (user +
system of all its processes, from /proc). Everything listens on 127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from llm_operator.api.models import LLMService
from llm_operator.router.config import engine_base_url
from llm_operator.router.objects import (
    CONFIG_DIR,
    CONFIG_FILE,
    LITELLM_VERSION,
    PORT,
    build_router_deployment,
    render_config,
)

REPO = Path(__file__).resolve().parents[2]
STANDIN = REPO / "tests" / "e2e" / "standin.py"
INSTALL_SCRIPT = REPO / "hack" / "install-litellm.sh"
MASTER_KEY = "sk-bench-" + os.urandom(8).hex()
SERVED = "chat"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Variant:
    """A way to start the proxy. `args`/`env` None: exactly as the operator's Deployment does."""

    name: str
    description: str
    args: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    config_patch: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


LEAN_SETTINGS = {
    "litellm_settings": {"set_verbose": False, "disable_end_user_cost_tracking": True},
    "general_settings": {"proxy_batch_write_at": 60},
}

VARIANTS = {
    v.name: v
    for v in (
        Variant("uvicorn-1w", "LiteLLM's default: one uvicorn worker, LITELLM_LOG=INFO", (),
                {"LITELLM_LOG": "INFO"}),
        Variant("uvicorn-2w", "--num_workers 2 (uvicorn, worker health-check timeout 60 s), LITELLM_LOG=INFO",
                ("--num_workers", "2", "--timeout_worker_healthcheck", "60"), {"LITELLM_LOG": "INFO"}),
        Variant("granian-2w", "--run_granian --num_workers 2, LITELLM_LOG=INFO",
                ("--run_granian", "--num_workers", "2"), {"LITELLM_LOG": "INFO"}),
        Variant("granian-2w-lean", "granian-2w + LITELLM_LOG=ERROR + set_verbose false, "
                "disable_end_user_cost_tracking, proxy_batch_write_at 60",
                ("--run_granian", "--num_workers", "2"), {"LITELLM_LOG": "ERROR"}, LEAN_SETTINGS),
        Variant("granian-1w-lean", "one Granian worker, lean as above", ("--run_granian",),
                {"LITELLM_LOG": "ERROR"}, LEAN_SETTINGS),
        Variant("granian-2w-no-metrics", "granian-2w-lean without the prometheus callback (what metrics cost)",
                ("--run_granian", "--num_workers", "2"), {"LITELLM_LOG": "ERROR"},
                {**LEAN_SETTINGS, "litellm_settings": {**LEAN_SETTINGS["litellm_settings"], "callbacks": []}}),
        Variant("granian-4w-lean", "four Granian workers on two cores, lean as above",
                ("--run_granian", "--num_workers", "4"), {"LITELLM_LOG": "ERROR"}, LEAN_SETTINGS),
        Variant("operator", "exactly the args and env of the operator's router Deployment"),
    )
}
DEFAULT_VARIANTS = ("uvicorn-1w", "uvicorn-2w", "granian-2w", "granian-2w-lean", "operator")


# --- processes -------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except OSError:
        return 0


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: exited with {process.returncode}\n{log.read_text(errors='replace')[-3000:]}")
        if http_status(url) == 200:
            return time.monotonic() - started
        time.sleep(0.3)
    raise RuntimeError(f"{url}: not ready after {timeout:.0f}s\n{log.read_text(errors='replace')[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def group_cpu_seconds(pgid: int) -> float:
    """user + system CPU of the live processes in a process group (the proxy and its workers)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid:  # fields[0] is state (3rd field of stat); pgrp is the 5th
            total += int(fields[11]) + int(fields[12])  # utime, stime (14th, 15th)
    return total / CLK_TCK


def proxy_python_version(python: str) -> str:
    return subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                          capture_output=True, text=True, check=True).stdout.strip()


def litellm_python() -> str:
    result = subprocess.run(["bash", str(INSTALL_SCRIPT)], stdout=subprocess.PIPE, text=True, check=True)
    return [line for line in result.stdout.splitlines() if line.strip()][-1]


def bench_service() -> LLMService:
    return LLMService.model_validate({
        "apiVersion": "serving.llm-operator.io/v1alpha1", "kind": "LLMService",
        "metadata": {"name": "chat", "namespace": "bench"},
        "spec": {"engine": "vllm", "model": {"name": "org/model", "servedName": SERVED}},
    })


def loopback_config(service: LLMService, upstream: str, patch: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The operator's config.yaml with only the engine's api_base rewritten (plus a variant's patch)."""
    config = yaml.safe_load(render_config(service, {}).text)
    for deployment in config["model_list"]:
        if deployment["litellm_params"].get("api_base") == engine_base_url(service):
            deployment["litellm_params"]["api_base"] = f"{upstream}/v1"
    for section, values in patch.items():
        config.setdefault(section, {}).update(values)
    return config


def proxy_command(service: LLMService, variant: Variant, config_path: Path, port: int,
                  tmp: Path) -> tuple[list[str], dict[str, str]]:
    """The container's args and plain env from the operator's Deployment, moved to loopback and `tmp`;
    a variant with its own args/env replaces the tuning part."""
    deployment = build_router_deployment(service, "uid", render_config(service, {}))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = list(container["args"])
    config_arg = args.index("--config")
    assert args[config_arg + 1] == f"{CONFIG_DIR}/{CONFIG_FILE}"
    port_arg = args.index("--port")
    assert args[port_arg + 1] == str(PORT)
    tuning = [a for i, a in enumerate(args) if i not in (config_arg, config_arg + 1, port_arg, port_arg + 1)]
    if variant.args is not None:
        tuning = list(variant.args)
    command = ["--config", str(config_path), "--port", str(port), "--host", "127.0.0.1", *tuning]
    env = {e["name"]: str(e["value"]) for e in container["env"] if "value" in e}
    env = {k: (str(tmp) + v[len("/tmp"):] if v.startswith("/tmp") else v) for k, v in env.items()}
    env.update(variant.env)
    return command, env


class Proxy:
    def __init__(self, python: str, service: LLMService, variant: Variant, upstream: str, tmp: Path) -> None:
        self.variant = variant
        self.port = free_port()
        work = tmp / variant.name
        work.mkdir(exist_ok=True)
        config_path = work / "config.yaml"
        config_path.write_text(yaml.safe_dump(loopback_config(service, upstream, variant.config_patch),
                                              sort_keys=False))
        args, env = proxy_command(service, variant, config_path, self.port, work)
        self.command = args
        self.env = env
        proc_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        proc_env.update({"LITELLM_MASTER_KEY": MASTER_KEY, "NO_PROXY": "127.0.0.1,localhost",
                         "no_proxy": "127.0.0.1,localhost", **env})
        for key in ("PROMETHEUS_MULTIPROC_DIR", "XDG_CACHE_HOME", "TMPDIR"):
            if key in env:
                Path(env[key]).mkdir(parents=True, exist_ok=True)
        self.log = work / "litellm.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen([str(Path(python).with_name("litellm")), *args], stdout=out,
                                            stderr=subprocess.STDOUT, env=proc_env, cwd=work, start_new_session=True)
        try:
            self.startup_seconds = wait_ready(f"{self.url}/health/readiness", self.process, self.log, 120)
        except BaseException:
            stop(self.process)
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        return group_cpu_seconds(self.process.pid)

    def in_flight(self) -> float | None:
        try:
            with urllib.request.urlopen(f"{self.url}/metrics/", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("litellm_in_flight_requests "):
                return float(line.split()[1]) - 1
        return None


# --- load ------------------------------------------------------------------------------------------------


@dataclass
class Level:
    target: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    rps: float
    cpu_ms_per_request: float | None = None
    added_p50_ms: float | None = None
    added_p99_ms: float | None = None
    rps_runs: list[float] = field(default_factory=list)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def load(url: str, concurrency: int, requests: int, max_seconds: float,
               warmup: int) -> tuple[list[float], int, float]:
    body = {"model": SERVED, "messages": [{"role": "user", "content": "Hello, how are you?"}], "max_tokens": 8}
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60)
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
        async def one() -> bool:
            async with session.post(f"{url}/v1/chat/completions", json=body) as response:
                await response.read()
                return response.status == 200

        # Warm-up: open the keep-alive connections (concurrently, so a multi-worker server spreads them).
        await asyncio.gather(*(one() for _ in range(max(warmup, concurrency))), return_exceptions=True)
        remaining = requests
        deadline = time.perf_counter() + max_seconds

        async def client() -> None:
            nonlocal remaining, errors
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                started = time.perf_counter()
                try:
                    ok = await one()
                except (TimeoutError, aiohttp.ClientError):
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, errors, elapsed


def measure(target: str, url: str, concurrency: int, requests: int, max_seconds: float,
            cpu: Callable[[], float] | None = None) -> Level:
    # Same number of requests at every level, but at least a few rounds of the clients.
    count = max(requests, 4 * concurrency)
    cpu_before = cpu() if cpu else None
    latencies, errors, elapsed = asyncio.run(load(url, concurrency, count, max_seconds, warmup=concurrency))
    cpu_used = cpu() - cpu_before if cpu and cpu_before is not None else None
    done = len(latencies)
    if not done:
        raise RuntimeError(f"{target} at {concurrency}: no request succeeded ({errors} errors)")
    # CPU over the measured requests plus the warm-up ones (sent inside the same CPU window).
    cpu_ms = 1000 * cpu_used / (done + errors + concurrency) if cpu_used is not None else None
    return Level(target, concurrency, done, errors, elapsed, 1000 * percentile(latencies, 0.5),
                 1000 * percentile(latencies, 0.99), 1000 * statistics.fmean(latencies), done / elapsed, cpu_ms)


def measure_repeated(target: str, url: str, concurrency: int, requests: int, max_seconds: float, repeat: int,
                     cpu: Callable[[], float] | None = None) -> Level:
    """`repeat` runs of a level; the one with the median throughput stands for it (so its latencies and CPU
    belong together), and every run's req/s is kept: on a shared 2-core machine one run varies by +-20 %."""
    runs = [measure(target, url, concurrency, requests, max_seconds, cpu) for _ in range(repeat)]
    runs.sort(key=lambda level: level.rps)
    median = runs[len(runs) // 2]
    median.rps_runs = [round(level.rps, 1) for level in runs]
    return median


# --- report ----------------------------------------------------------------------------------------------


def table(levels: list[Level]) -> str:
    rows = ["| target | clients | requests | errors | p50 ms | p99 ms | req/s | req/s of all runs | added p50 ms "
            "| added p99 ms | proxy CPU ms/req |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def fmt(value: float | None, digits: int = 1) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    for lv in levels:
        rows.append(f"| {lv.target} | {lv.concurrency} | {lv.requests} | {lv.errors} | {lv.p50_ms:.1f} | "
                    f"{lv.p99_ms:.1f} | {lv.rps:.0f} | {' '.join(f'{r:.0f}' for r in lv.rps_runs)} | "
                    f"{fmt(lv.added_p50_ms)} | {fmt(lv.added_p99_ms)} | "
                    f"{fmt(lv.cpu_ms_per_request)} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per level (default 300)")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="time cap per level (default 20)")
    parser.add_argument("--backend-delay-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per level; the median-throughput run is reported (default 3)")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--litellm-python", help="python of another LiteLLM venv (default: install-litellm.sh)")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--md", type=Path, help="write the markdown table here")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",") if c]
    variants = [VARIANTS[name] for name in args.variants.split(",") if name]

    python = args.litellm_python or litellm_python()
    print(f"LiteLLM {LITELLM_VERSION} on Python {proxy_python_version(python)} ({python})", flush=True)
    service = bench_service()
    results: list[Level] = []
    proxies: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="router-overhead-") as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        standin_log = tmp / "standin.log"
        with standin_log.open("wb") as out:
            standin = subprocess.Popen(
                [sys.executable, str(STANDIN), "--port", str(port), "--model", SERVED, "--name", "bench",
                 "--delay", str(args.backend_delay_ms / 1000)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        upstream = f"http://127.0.0.1:{port}"
        try:
            wait_ready(f"{upstream}/health", standin, standin_log, 30)
            direct = {c: measure_repeated("direct", upstream, c, args.requests, args.max_seconds, args.repeat)
                      for c in levels}
            results.extend(direct.values())
            print(table(list(direct.values())), flush=True)
            for variant in variants:
                try:
                    proxy = Proxy(python, service, variant, upstream, tmp)
                except RuntimeError as error:
                    print(f"\n{variant.name}: did not start: {str(error)[:300]}", flush=True)
                    proxies.append({"variant": variant.name, "description": variant.description,
                                    "failed": str(error)[:2000]})
                    continue
                try:
                    print(f"\n{variant.name}: ready in {proxy.startup_seconds:.1f}s: litellm "
                          f"{' '.join(proxy.command[4:])}", flush=True)
                    proxies.append({"variant": variant.name, "description": variant.description,
                                    "args": proxy.command, "env": proxy.env,
                                    "config_patch": variant.config_patch,
                                    "startup_seconds": round(proxy.startup_seconds, 1)})
                    for c in levels:
                        level = measure_repeated(variant.name, proxy.url, c, args.requests, args.max_seconds,
                                                 args.repeat, proxy.cpu_seconds)
                        level.added_p50_ms = level.p50_ms - direct[c].p50_ms
                        level.added_p99_ms = level.p99_ms - direct[c].p99_ms
                        results.append(level)
                        print(table([level]).splitlines()[-1], flush=True)
                    proxies[-1]["in_flight_after"] = proxy.in_flight()
                finally:
                    stop(proxy.process)
        finally:
            stop(standin)

    text = table(results)
    print("\n" + text)
    meta = {"litellm": LITELLM_VERSION, "backend_delay_ms": args.backend_delay_ms, "requests": args.requests,
            "repeat": args.repeat, "proxy_python": proxy_python_version(python),
            "max_seconds": args.max_seconds, "cpus": os.cpu_count(), "python": platform.python_version(),
            "load_avg_at_end": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}
    if args.md:
        args.md.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "proxies": proxies,
                                         "levels": [asdict(lv) for lv in results]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
