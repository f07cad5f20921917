"""How the operator behaves with many LLMServices, against the real local control plane.

    python -m bench.operator_scale [--counts 10,50] [--steady-seconds 60] [--autoscaling] [--plain-client]
                                   [--changes 20] [--md FILE] [--json FILE]

For each count N: starts `llm-operator run` for one fresh namespace, applies N small CPU vLLM LLMServices at
once, and measures the time until each is Ready (kwok marks the Pods Running; the operator builds and applies
the engine and router objects, the controllers create ReplicaSets and Pods, the operator writes status).
Then, with all N Ready and nothing changing, it measures for --steady-seconds what the operator costs at rest:
its CPU (user + system, from /proc), its memory (RSS), and the requests it sends to the kube-apiserver. The
request rate is read from the apiserver's own `apiserver_request_total` (every verb but WATCH): the rate with
the operator running minus the rate of the same cluster with the operator paused (kwok heartbeats and the
controllers), in alternating windows (`operator_share`). Uses the cluster `hack/cluster.sh` manages (started
when it is not running) and leaves it as it found it.

With --autoscaling every LLMService is autoscaled (1..3 replicas) and the operator reads a real Prometheus
(Debian's `prometheus` on loopback, answering every query, with no targets: the policy holds), so the
autoscaling loop's cost at rest is in the numbers too.

With all N Ready and at rest, --changes times one LLMService's spec.serving.env gets a new value, one change at a
time, and the time from the patch until the engine Deployment holds it is the change latency (p50, p99).

With --plain-client every round first measures the testbed's own limit: a plain client applies the same objects
for N LLMServices without the operator (bench/operator_scale/plain_client.py) and waits until all their
Deployments are available; the operator's rate is reported as a share of it. Every round also reports the
apiserver requests per LLMService during the burst, by verb and resource, and the seconds the
kube-controller-manager's requests waited in its own client-side rate limiter (--kube-api-qps, 20 by default):
the Deployment and ReplicaSet controllers that make the Pods go through it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from kubernetes import client

from bench.operator_scale import plain_client
from bench.operator_scale.watching import FirstTimes, instance_ready_times, is_available, is_ready
from llm_operator import GROUP, PLURAL, VERSION

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO / "hack" / "cluster.sh"
CLK_TCK = os.sysconf("SC_CLK_TCK")
LABEL = re.compile(r'(\w+)="([^"]*)"')
REQUEST_LINE = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$')
THROTTLE_SUM = re.compile(r'^rest_client_rate_limiter_duration_seconds_sum\{[^}]*\} (?P<value>[0-9.e+]+)$')
CLIENT_REQUESTS = re.compile(r'^rest_client_requests_total\{[^}]*\} (?P<value>[0-9.e+]+)$')
QUEUE_LINE = re.compile(
    r'^workqueue_(?P<metric>adds_total|queue_duration_seconds_sum)\{name="(?P<name>[^"]+)"\} (?P<value>[0-9.e+]+)$')
INSTANCE_LABEL = "app.kubernetes.io/instance"
DEPLOYMENTS_PER_LLMSERVICE = 2  # engine and router


@dataclass
class Row:
    mode: str  # "plain", "autoscaling" (the operator) or "plain client" (no operator)
    llmservices: int
    all_ready_s: float
    ready_p50_s: float
    ready_p95_s: float
    operator_cpu_percent: float | None = None
    operator_rss_mib: float | None = None
    api_requests_per_s: float | None = None
    api_requests_per_llmservice_per_min: float | None = None
    api_requests_per_s_by_verb: dict[str, float] = field(default_factory=dict)
    api_requests_per_s_by_call: dict[str, float] = field(default_factory=dict)  # "VERB resource[/subresource]"
    # Events per second in the namespace during the rest windows, by reporting component (top 5).
    rest_events_by_component: dict[str, float] = field(default_factory=dict)
    burst_requests_per_llmservice: float = 0.0
    burst_requests_per_llmservice_by_call: dict[str, float] = field(default_factory=dict)
    controller_manager_requests: float = 0.0
    controller_manager_throttled_s: float = 0.0
    # Mean seconds an item waited in each controller's work queue during the burst (the slowest first).
    controller_queue_wait_s: dict[str, float] = field(default_factory=dict)
    operator_burst_cpu_s: float | None = None
    change_p50_s: float | None = None
    change_p99_s: float | None = None
    change_latencies_s: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """LLMServices Ready per second, over the whole burst."""
        return self.llmservices / self.all_ready_s if self.all_ready_s else 0.0


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

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 300) -> str:
        return subprocess.run([self.kubectl_path, "--kubeconfig", self.kubeconfig, *args], input=input,
                              capture_output=True, text=True, check=True, timeout=timeout).stdout

    def metrics(self) -> str:
        return self.kubectl("get", "--raw", "/metrics")

    def requests_by_verb(self) -> Counter[str]:
        return requests_by_verb(self.metrics())

    def delete_namespace(self, namespace: str, timeout_s: float = 900) -> None:
        """Gone before the next round: a namespace being emptied would compete with the next burst."""
        self.kubectl("delete", "namespace", namespace, f"--timeout={int(timeout_s)}s", timeout=timeout_s + 30)

    def stop(self) -> None:
        if self.started_here:
            subprocess.run(["bash", str(CLUSTER_SH), "down"], check=False, stdout=sys.stderr)


def labels_of(text: str) -> dict[str, str]:
    return dict(LABEL.findall(text))


def requests_by(metrics: str, *keys: str) -> Counter[str]:
    """Requests the apiserver has answered, by the given labels joined with a space, except WATCH (a watch
    is one long request)."""
    totals: Counter[str] = Counter()
    for line in metrics.splitlines():
        match = REQUEST_LINE.match(line)
        labels = labels_of(match["labels"]) if match else {}
        if labels.get("verb") and labels["verb"] != "WATCH":
            key = " ".join(filter(None, (_label(labels, k) for k in keys)))
            totals[key] += float(match["value"])
    return totals


def _label(labels: dict[str, str], key: str) -> str:
    if key == "resource" and labels.get("subresource"):
        return f"{labels.get('resource', '')}/{labels['subresource']}"
    return labels.get(key, "")


def requests_by_verb(metrics: str) -> Counter[str]:
    return requests_by(metrics, "verb")


def client_throttle(metrics: str) -> tuple[float, float]:
    """(seconds its requests waited in its client-side rate limiter, requests sent) of a Kubernetes
    component, from its own /metrics."""
    waited = sum(float(m["value"]) for line in metrics.splitlines() if (m := THROTTLE_SUM.match(line)))
    sent = sum(float(m["value"]) for line in metrics.splitlines() if (m := CLIENT_REQUESTS.match(line)))
    return waited, sent


def queue_totals(metrics: str) -> dict[str, tuple[float, float]]:
    """(seconds items waited in the queue, items added) per work queue of a controller-manager."""
    totals: dict[str, list[float]] = {}
    for line in metrics.splitlines():
        if match := QUEUE_LINE.match(line):
            pair = totals.setdefault(match["name"], [0.0, 0.0])
            pair[0 if match["metric"] == "queue_duration_seconds_sum" else 1] += float(match["value"])
    return {name: (waited, adds) for name, (waited, adds) in totals.items()}


def mean_queue_waits(after: dict[str, tuple[float, float]], before: dict[str, tuple[float, float]],
                     top: int = 4) -> dict[str, float]:
    """Mean wait per item added between two readings, for the `top` slowest queues."""
    waits = {}
    for name, (waited, adds) in after.items():
        old_waited, old_adds = before.get(name, (0.0, 0.0))
        if adds > old_adds:
            waits[name] = round((waited - old_waited) / (adds - old_adds), 2)
    return dict(sorted(waits.items(), key=lambda item: -item[1])[:top])


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1): p99 of 20 samples is their maximum."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def delta(after: Counter[str], before: Counter[str]) -> Counter[str]:
    return Counter({key: after[key] - before[key] for key in after if after[key] - before[key] > 0})


class ControllerManager:
    """The kube-controller-manager's /metrics (its secure port allows /metrics without a token)."""

    def __init__(self) -> None:
        self.url = f"https://127.0.0.1:{self._port()}/metrics"

    @staticmethod
    def _port() -> int:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                args = cmdline.read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if args and args[0].endswith("kube-controller-manager"):
                return next(int(a.split("=", 1)[1]) for a in args if a.startswith("--secure-port="))
        raise RuntimeError("kube-controller-manager is not running")

    def metrics(self) -> str:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the testbed's self-signed cert
        with urllib.request.urlopen(self.url, context=context, timeout=30) as response:
            return response.read().decode()


BENCH_NODES = ("bench-cpu-0", "bench-cpu-1", "bench-cpu-2")


def bench_node(name: str) -> dict:
    """A big fake CPU Node (the testbed's cpu-0 holds 32 CPUs: 16 routers at 1 CPU each would fill it). Three
    hold 1000 LLMServices (2000 Pods, 1000 CPUs of routers) twice over, autoscaled to 3 engines too."""
    capacity = {"cpu": "4000", "memory": "64Ti", "pods": "2000", "ephemeral-storage": "40Ti"}
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


def llmservices(count: int, namespace: str, autoscaling: bool = False) -> list[dict]:
    docs = [llmservice(f"svc-{i:04d}", autoscaling) for i in range(count)]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return docs


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

    def pause(self) -> None:
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.resume()
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def request_rates(cluster: Cluster, seconds: float) -> dict[str, float]:
    """Requests per second by verb and resource over `seconds`."""
    before, started = requests_by(cluster.metrics(), "verb", "resource"), time.monotonic()
    time.sleep(seconds)
    after, elapsed = requests_by(cluster.metrics(), "verb", "resource"), time.monotonic() - started
    return {call: (after[call] - before[call]) / elapsed for call in after}


def events_by_component(api: client.ApiClient, namespace: str) -> Counter[str]:
    """Events in `namespace` by the component that reported them, each counted `count` times (a repeat
    of an Event is a PATCH of its count)."""
    found: Counter[str] = Counter()
    for event in client.CoreV1Api(api).list_namespaced_event(namespace).items:
        component = event.reporting_component or (event.source.component if event.source else None) or "?"
        found[component] += event.count or 1
    return found


def operator_share(cluster: Cluster, operator: Operator, seconds: float) -> tuple[dict[str, float], float]:
    """The requests per second by verb and resource the operator causes at rest, and its CPU % meanwhile.

    Four windows of `seconds`/4 in the order running, paused, paused, running (SIGSTOP): the rate while
    running minus the rate while paused, each the mean of its two windows. The rest of the cluster's rate
    drifts after a burst (the controllers' event spam filters relax: the HPA controller's `POST events`
    fall from tens per second to none within minutes at 1000), and this order cancels a linear drift.
    Events are also counted by their reporting component (`events_by_component`), which names who posts
    them whatever the drift."""
    quarter = seconds / 4
    running: list[dict[str, float]] = []
    paused: list[dict[str, float]] = []
    cpu = wall = 0.0
    try:
        for operator_runs in (True, False, False, True):
            (operator.resume if operator_runs else operator.pause)()
            cpu_before, wall_before = operator.cpu_seconds(), time.monotonic()
            rates = request_rates(cluster, quarter)
            if operator_runs:
                cpu += operator.cpu_seconds() - cpu_before
                wall += time.monotonic() - wall_before
            (running if operator_runs else paused).append(rates)
    finally:
        operator.resume()
    calls = {call for rates in running + paused for call in rates}
    mean = lambda windows, call: sum(rates.get(call, 0.0) for rates in windows) / len(windows)  # noqa: E731
    share = {call: round(max(0.0, mean(running, call) - mean(paused, call)), 2) for call in calls}
    return share, 100 * cpu / wall


def by_verb(rates: dict[str, float]) -> dict[str, float]:
    """Rates by "VERB resource" summed by verb."""
    totals: dict[str, float] = {}
    for call, rate in rates.items():
        totals[call.split()[0]] = totals.get(call.split()[0], 0.0) + rate
    return totals


def ready_timeout(count: int) -> float:
    """Three times the last measured ~0.5 s per LLMService, and two minutes of slack."""
    return 120 + 1.5 * count


class Burst:
    """What the apiserver and the kube-controller-manager did from the start of a burst to all Ready."""

    def __init__(self, cluster: Cluster, controller_manager: ControllerManager) -> None:
        self.cluster, self.controller_manager = cluster, controller_manager
        self.requests = requests_by(cluster.metrics(), "verb", "resource")
        metrics = controller_manager.metrics()
        self.throttle, self.queues = client_throttle(metrics), queue_totals(metrics)

    def finish(self, row: Row) -> Row:
        calls = delta(requests_by(self.cluster.metrics(), "verb", "resource"), self.requests)
        metrics = self.controller_manager.metrics()
        waited, sent = client_throttle(metrics)
        row.controller_queue_wait_s = mean_queue_waits(queue_totals(metrics), self.queues)
        row.burst_requests_per_llmservice = round(sum(calls.values()) / row.llmservices, 1)
        row.burst_requests_per_llmservice_by_call = {
            call: round(n / row.llmservices, 2) for call, n in calls.most_common() if n / row.llmservices >= 0.05}
        row.controller_manager_throttled_s = round(waited - self.throttle[0], 1)
        row.controller_manager_requests = sent - self.throttle[1]
        return row


def ready_row(mode: str, times: list[float]) -> Row:
    return Row(mode, len(times), max(times), statistics.median(times), percentile(times, 0.95))


def measure_plain_client(cluster: Cluster, api: client.ApiClient, count: int,
                         controller_manager: ControllerManager) -> Row:
    """The same objects without the operator, applied as fast as the apiserver takes them."""
    namespace = f"plain-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    objects = plain_client.objects_for(llmservices(count, namespace), namespace)
    deployments = client.AppsV1Api(api)
    watcher = FirstTimes(deployments.list_namespaced_deployment, (namespace,), is_available, ready_timeout(count))
    try:
        burst = Burst(cluster, controller_manager)
        watcher.restart_clock()
        plain_client.apply_all(plain_client.DynamicClient(api), objects)
        watcher.wait(DEPLOYMENTS_PER_LLMSERVICE * count, ready_timeout(count))
        instance_of = {name: labels.get(INSTANCE_LABEL, name) for name, labels in watcher.labels.items()}
        times = instance_ready_times(watcher.times, instance_of, DEPLOYMENTS_PER_LLMSERVICE)
        if len(times) < count:
            raise RuntimeError(f"plain client: only {len(times)} of {count} Ready after {ready_timeout(count):.0f}s")
        row = burst.finish(ready_row("plain client", sorted(times.values())))
    finally:
        watcher.stop()
    cluster.delete_namespace(namespace)
    return row


def change_latencies(api: client.ApiClient, namespace: str, name: str, changes: int,
                     timeout_s: float = 30) -> list[float]:
    """Seconds from a patch of spec.serving.env until the engine Deployment holds the new value, one change
    at a time (polled every 50 ms, at most `timeout_s` per change)."""
    custom, apps = client.CustomObjectsApi(api), client.AppsV1Api(api)
    latencies = []
    for i in range(changes):
        value = f"{uuid.uuid4().hex[:8]}-{i}"
        body = {"spec": {"serving": {"env": [{"name": "BENCH_CHANGE", "value": value}]}}}
        started = time.monotonic()
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, body)
        while time.monotonic() - started < timeout_s:
            found = apps.list_namespaced_deployment(namespace, label_selector=f"{INSTANCE_LABEL}={name}",
                                                    _preload_content=False)
            if value in found.data.decode():
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"change {i} not in the engine Deployment after {timeout_s:.0f}s")
        latencies.append(round(time.monotonic() - started, 3))
    return latencies


def measure(cluster: Cluster, api: client.ApiClient, count: int, args: argparse.Namespace, work: Path,
            controller_manager: ControllerManager, prometheus_url: str | None = None) -> Row:
    namespace = f"scale-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    operator = Operator(cluster, namespace, work / f"operator-{count}.log", prometheus_url)
    autoscaling = prometheus_url is not None
    custom = client.CustomObjectsApi(api)
    watcher = FirstTimes(custom.list_namespaced_custom_object, (GROUP, VERSION, namespace, PLURAL), is_ready,
                         ready_timeout(count))
    try:
        time.sleep(5)  # kopf's startup: the watch streams are open before the burst
        docs = llmservices(count, namespace, autoscaling)
        burst, cpu_before = Burst(cluster, controller_manager), operator.cpu_seconds()
        watcher.restart_clock()
        plain_client.apply_all(plain_client.DynamicClient(api), docs)  # the same client as the plain client's
        if not watcher.wait(count, ready_timeout(count)):
            raise RuntimeError(f"only {len(watcher.times)} of {count} LLMServices Ready")
        row = burst.finish(ready_row("autoscaling" if autoscaling else "plain", sorted(watcher.times.values())))
        row.operator_burst_cpu_s = round(operator.cpu_seconds() - cpu_before, 1)
        watcher.stop()
        time.sleep(10)  # the tail of the burst's events settles
        events_before = events_by_component(api, namespace)
        operators, row.operator_cpu_percent = operator_share(cluster, operator, args.steady_seconds)
        row.rest_events_by_component = {
            component: round(count / args.steady_seconds, 2)
            for component, count in (events_by_component(api, namespace) - events_before).most_common(5)}
        # The operator's own Events, by their reporting component: the apiserver's `POST events` rate
        # cannot tell the operator's from the controllers' (the HPA controller's spam after a burst).
        operator_events = row.rest_events_by_component.get("llm-operator", 0.0) * 2  # it ran half the time
        if "POST events" in operators:
            operators["POST events"] = round(min(operators["POST events"], operator_events), 2)
        row.operator_rss_mib = operator.rss_mib()
        if args.changes:
            row.change_latencies_s = change_latencies(api, namespace, docs[0]["metadata"]["name"], args.changes)
            row.change_p50_s = statistics.median(row.change_latencies_s)
            row.change_p99_s = percentile(row.change_latencies_s, 0.99)
    finally:
        watcher.stop()
        operator.stop()
    cluster.delete_namespace(namespace)
    row.api_requests_per_s = sum(operators.values())
    row.api_requests_per_llmservice_per_min = 60 * row.api_requests_per_s / count
    row.api_requests_per_s_by_verb = {verb: round(rate, 2) for verb, rate in by_verb(operators).items() if rate}
    row.api_requests_per_s_by_call = {call: rate for call, rate in operators.items() if rate}
    return row


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def share(row: Row, rows: list[Row]) -> float | None:
    """The operator's rate as a share of the plain client's for the same count (None without one)."""
    plain = next((r for r in rows if r.mode == "plain client" and r.llmservices == row.llmservices), None)
    return row.rate / plain.rate if plain and plain.rate and row.mode != "plain client" else None


def table(rows: list[Row]) -> str:
    lines = ["| mode | LLMServices | all Ready s | LLMServices/s | share of plain client | Ready p50 s | Ready p95 s "
             "| change p50 s | change p99 s | operator CPU % at rest | operator RSS MiB | API requests/s at rest "
             "| per LLMService per min |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = share(r, rows)
        lines.append(f"| {r.mode} | {r.llmservices} | {r.all_ready_s:.1f} | {r.rate:.2f} | "
                     f"{'-' if ratio is None else f'{100 * ratio:.0f} %'} | {r.ready_p50_s:.1f} | "
                     f"{r.ready_p95_s:.1f} | {_num(r.change_p50_s, 2)} | {_num(r.change_p99_s, 2)} | "
                     f"{_num(r.operator_cpu_percent)} | {_num(r.operator_rss_mib, 0)} | "
                     f"{_num(r.api_requests_per_s)} | {_num(r.api_requests_per_llmservice_per_min)} |")
    return "\n".join(lines)


def burst_table(rows: list[Row]) -> str:
    """Where the burst's requests went: per LLMService, and the controller-manager's waiting."""
    lines = ["| mode | LLMServices | apiserver requests per LLMService | operator CPU s | controller-manager "
             "requests/s | controller-manager throttled s (sum) | mean wait in its work queues s "
             "| top calls per LLMService |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        top = ", ".join(f"{call} {n:g}" for call, n in list(r.burst_requests_per_llmservice_by_call.items())[:8])
        queues = ", ".join(f"{name} {wait:g}" for name, wait in r.controller_queue_wait_s.items())
        lines.append(f"| {r.mode} | {r.llmservices} | {r.burst_requests_per_llmservice:.1f} | "
                     f"{_num(r.operator_burst_cpu_s)} | {r.controller_manager_requests / r.all_ready_s:.1f} | "
                     f"{r.controller_manager_throttled_s:.0f} | {queues} | {top} |")
    return "\n".join(lines)


def prepare(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/llmservices.serving.llm-operator.io")
    nodes = "---\n".join(yaml.safe_dump(bench_node(name)) for name in BENCH_NODES)
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=nodes)
    cluster.kubectl("wait", "--for=condition=Ready", "--timeout=120s", *(f"node/{n}" for n in BENCH_NODES))


def run_rounds(cluster: Cluster, args: argparse.Namespace, work: Path) -> list[Row]:
    api = client.ApiClient(plain_client.configuration(cluster.kubeconfig))
    controller_manager = ControllerManager()
    prometheus = Prometheus(work) if args.autoscaling else None
    rows: list[Row] = []
    try:
        for count in (int(c) for c in args.counts.split(",") if c):
            if args.plain_client:
                rows.append(measure_plain_client(cluster, api, count, controller_manager))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
            rows.append(measure(cluster, api, count, args, work, controller_manager,
                                prometheus.url if prometheus else None))
            print(table(rows[-1:]).splitlines()[-1], rows[-1].api_requests_per_s_by_call, flush=True)
            print(burst_table(rows[-1:]).splitlines()[-1], flush=True)
    finally:
        if prometheus:
            prometheus.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="10,50", help="LLMServices per round, comma-separated")
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    parser.add_argument("--autoscaling", action="store_true",
                        help="every LLMService autoscaled, the operator reading a local Prometheus")
    parser.add_argument("--plain-client", action="store_true",
                        help="each round also measures a plain client applying the same objects, no operator")
    parser.add_argument("--changes", type=int, default=20, help="spec changes timed at rest (0: none)")
    parser.add_argument("--md", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    cluster = Cluster()
    try:
        prepare(cluster)
        with tempfile.TemporaryDirectory(prefix="operator-scale-") as work:
            rows = run_rounds(cluster, args, Path(work))
    finally:
        cluster.kubectl("delete", "node", *BENCH_NODES, "--wait=false")
        cluster.stop()
    text = table(rows) + "\n\n" + burst_table(rows)
    print("\n" + text)
    if args.md:
        args.md.write_text(text + "\n")
    if args.json:
        meta = {"steady_seconds": args.steady_seconds, "changes": args.changes, "cpus": os.cpu_count(),
                "date": time.strftime("%Y-%m-%d %H:%M")}
        args.json.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
