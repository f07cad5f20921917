"""How the operator behaves with many LLMServices, against the real local control plane.

    python -m bench.operator_scale [--counts 10,50] [--steady-seconds 60] [--autoscaling] [--md FILE] [--json FILE]

For each count N: starts `llm-operator run` for one fresh namespace, applies N small CPU vLLM LLMServices at
once, and measures the time until each is Ready (kwok marks the Pods Running; the operator builds and applies
the engine and router objects, the controllers create ReplicaSets and Pods, the operator writes status).
Then, with all N Ready and nothing changing, it measures for --steady-seconds what the operator costs at rest:
its CPU (user + system, from /proc), its memory (RSS), and the requests it sends to the kube-apiserver. The
request rate is read from the apiserver's own `apiserver_request_total` (every verb but WATCH): the rate with
the operator running minus the rate of the same cluster with the operator stopped (kwok heartbeats and the
controllers). Uses the cluster `hack/cluster.sh` manages (started when it is not running) and leaves it as it
found it.

With --autoscaling every LLMService is autoscaled (1..3 replicas) and the operator reads a real Prometheus
(Debian's `prometheus` on loopback, answering every query, with no targets: the policy holds), so the
autoscaling loop's cost at rest is in the numbers too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO / "hack" / "cluster.sh"
CLK_TCK = os.sysconf("SC_CLK_TCK")
VERB = re.compile(r'verb="([A-Z]+)"')
REQUEST_LINE = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$')


@dataclass
class Row:
    mode: str  # "plain" or "autoscaling"
    llmservices: int
    all_ready_s: float
    ready_p50_s: float
    ready_p95_s: float
    operator_cpu_percent: float
    operator_rss_mib: float
    api_requests_per_s: float
    api_requests_per_llmservice_per_min: float
    api_requests_per_s_by_verb: dict[str, float]


class Cluster:
    def __init__(self) -> None:
        self.started_here = "state:      running" not in self._hack("status")
        subprocess.run(["bash", str(CLUSTER_SH), "up"], check=True, stdout=sys.stderr)
        self.kubeconfig = self._hack("kubeconfig")
        tools = subprocess.run(["bash", "-c", f". {REPO}/hack/lib.sh && echo $TOOLS_BIN"],
                               capture_output=True, text=True, check=True).stdout.strip()
        self.kubectl_path = str(Path(tools) / "kubectl")

    @staticmethod
    def _hack(*args: str) -> str:
        return subprocess.run(["bash", str(CLUSTER_SH), *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return subprocess.run([self.kubectl_path, "--kubeconfig", self.kubeconfig, *args], input=input,
                              capture_output=True, text=True, check=True, timeout=300).stdout

    def requests_by_verb(self) -> Counter[str]:
        return requests_by_verb(self.kubectl("get", "--raw", "/metrics"))

    def stop(self) -> None:
        if self.started_here:
            subprocess.run(["bash", str(CLUSTER_SH), "down"], check=False, stdout=sys.stderr)


def requests_by_verb(metrics: str) -> Counter[str]:
    """Requests the apiserver has answered, by verb, except WATCH (a watch is one long request)."""
    totals: Counter[str] = Counter()
    for line in metrics.splitlines():
        match = REQUEST_LINE.match(line)
        verb = VERB.search(match["labels"]) if match else None
        if verb and verb[1] != "WATCH":
            totals[verb[1]] += float(match["value"])
    return totals


BENCH_NODES = ("bench-cpu-0", "bench-cpu-1")


def bench_node(name: str) -> dict:
    """A big fake CPU Node (the testbed's cpu-0 holds 32 CPUs: 16 routers at 1 CPU each would fill it)."""
    capacity = {"cpu": "2000", "memory": "16Ti", "pods": "1000", "ephemeral-storage": "10Ti"}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                     "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                "kubernetes.io/arch": "amd64", "type": "kwok"}},
        "status": {"allocatable": capacity, "capacity": capacity, "phase": "Running",
                   "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "fake",
                                "kubeProxyVersion": "fake"}},
    }


def llmservice(name: str, autoscaling: bool = False) -> dict:
    spec: dict = {"engine": "vllm", "model": {"name": "Qwen/Qwen2.5-0.5B-Instruct", "parameters": "0.5B"},
                  "resources": {"gpus": 0}}
    if autoscaling:
        spec["autoscaling"] = {"enabled": True, "minReplicas": 1, "maxReplicas": 3}
    return {"apiVersion": "serving.llm-operator.io/v1alpha1", "kind": "LLMService", "metadata": {"name": name},
            "spec": spec}


class Prometheus:
    """A real Prometheus on loopback with nothing to scrape: every query answers, with no series."""

    def __init__(self, work: Path, port: int = 19391) -> None:
        self.url = f"http://127.0.0.1:{port}"
        config = work / "prometheus.yml"
        config.write_text("global: {scrape_interval: 15s}\nscrape_configs: []\n")
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={work / 'prometheus'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(120):
            if subprocess.run(["curl", "-sf", f"{self.url}/-/ready"], capture_output=True).returncode == 0:
                return
            time.sleep(0.5)
        raise RuntimeError("Prometheus did not become ready")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(30)


class Operator:
    def __init__(self, cluster: Cluster, namespace: str, log: Path, prometheus_url: str | None = None) -> None:
        executable = Path(sys.executable).with_name("llm-operator")
        extra = ["--prometheus-url", prometheus_url] if prometheus_url else []
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(executable), "run", "--namespace", namespace, "--kubeconfig", cluster.kubeconfig,
                 "--log-level", "warning", *extra],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def ready_times(cluster: Cluster, namespace: str, count: int, started: float, timeout: float) -> list[float]:
    """Seconds from `started` until each LLMService first showed Ready=True (polled every 0.5 s)."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < count and time.monotonic() < deadline:
        items = json.loads(cluster.kubectl("get", "llms", "-n", namespace, "-o", "json"))["items"]
        now = time.monotonic() - started
        for item in items:
            conditions = (item.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                seen.setdefault(item["metadata"]["name"], now)
        time.sleep(0.5)
    if len(seen) < count:
        raise RuntimeError(f"only {len(seen)} of {count} LLMServices Ready after {timeout:.0f}s")
    return sorted(seen.values())


def request_rates(cluster: Cluster, seconds: float) -> dict[str, float]:
    """Requests per second by verb over `seconds`."""
    before, started = cluster.requests_by_verb(), time.monotonic()
    time.sleep(seconds)
    after, elapsed = cluster.requests_by_verb(), time.monotonic() - started
    return {verb: (after[verb] - before[verb]) / elapsed for verb in after}


def measure(
    cluster: Cluster, count: int, steady_s: float, work: Path, prometheus_url: str | None = None
) -> Row:
    namespace = f"scale-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    operator = Operator(cluster, namespace, work / f"operator-{count}.log", prometheus_url)
    autoscaling = prometheus_url is not None
    try:
        time.sleep(5)  # kopf's startup: the watch streams are open before the burst
        manifests = "---\n".join(
            yaml.safe_dump(llmservice(f"svc-{i:03d}", autoscaling)) for i in range(count))
        started = time.monotonic()
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifests)
        times = ready_times(cluster, namespace, count, started, timeout=120 + 3 * count)
        time.sleep(10)  # the tail of the burst's events settles
        cpu_before, wall_before = operator.cpu_seconds(), time.monotonic()
        with_operator = request_rates(cluster, steady_s)
        cpu_percent = 100 * (operator.cpu_seconds() - cpu_before) / (time.monotonic() - wall_before)
        rss = operator.rss_mib()
    finally:
        operator.stop()
    without_operator = request_rates(cluster, steady_s)
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")
    by_verb = {verb: round(max(0.0, rate - without_operator.get(verb, 0.0)), 2) for verb, rate in with_operator.items()}
    operator_rate = sum(by_verb.values())
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    mode = "autoscaling" if autoscaling else "plain"
    return Row(mode, count, times[-1], statistics.median(times), p95, cpu_percent, rss, operator_rate,
               60 * operator_rate / count, {verb: rate for verb, rate in by_verb.items() if rate})


def table(rows: list[Row]) -> str:
    lines = ["| mode | LLMServices | all Ready s | Ready p50 s | Ready p95 s | operator CPU % at rest "
             "| operator RSS MiB | API requests/s at rest | per LLMService per min |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.mode} | {r.llmservices} | {r.all_ready_s:.1f} | {r.ready_p50_s:.1f} | "
                     f"{r.ready_p95_s:.1f} | "
                     f"{r.operator_cpu_percent:.1f} | {r.operator_rss_mib:.0f} | {r.api_requests_per_s:.1f} | "
                     f"{r.api_requests_per_llmservice_per_min:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="10,50", help="LLMServices per round, comma-separated")
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    parser.add_argument("--autoscaling", action="store_true",
                        help="every LLMService autoscaled, the operator reading a local Prometheus")
    parser.add_argument("--md", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    cluster = Cluster()
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/llmservices.serving.llm-operator.io")
    nodes = "---\n".join(yaml.safe_dump(bench_node(name)) for name in BENCH_NODES)
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=nodes)
    cluster.kubectl("wait", "--for=condition=Ready", "--timeout=120s", *(f"node/{n}" for n in BENCH_NODES))
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory(prefix="operator-scale-") as work:
            prometheus = Prometheus(Path(work)) if args.autoscaling else None
            try:
                for count in (int(c) for c in args.counts.split(",") if c):
                    rows.append(measure(cluster, count, args.steady_seconds, Path(work),
                                        prometheus.url if prometheus else None))
                    print(table(rows[-1:]).splitlines()[-1], rows[-1].api_requests_per_s_by_verb, flush=True)
            finally:
                if prometheus:
                    prometheus.stop()
    finally:
        cluster.kubectl("delete", "node", *BENCH_NODES, "--wait=false")
        cluster.stop()
    text = table(rows)
    print("\n" + text)
    if args.md:
        args.md.write_text(text + "\n")
    if args.json:
        meta = {"steady_seconds": args.steady_seconds, "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M")}
        args.json.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
