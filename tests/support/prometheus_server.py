"""A real Prometheus server (Debian's `prometheus` package) on loopback for e2e tests.

Targets come from a file_sd JSON file the test rewrites as Pods appear, each with the
`namespace` and `pod` labels of the Kubernetes Pod it stands for, so the operator's
queries (`{namespace="...", pod=~"..."}`) see what they would see in a cluster where
Prometheus discovers Pods.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

# 2 s, not 1 s: the scrape timeout cannot exceed the interval, and a vLLM under load on this 2-core
# machine answered /metrics in up to 2.6 s (a failed scrape leaves the value from before the load).
SCRAPE_INTERVAL = "2s"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrometheusServer:
    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        self.workdir = workdir
        self.binary = binary or shutil.which("prometheus") or "/usr/bin/prometheus"
        self.port = free_port()
        self.targets_file = workdir / "targets.json"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL},
            "scrape_configs": [{
                "job_name": "standins",
                # The targets' own namespace/pod labels win over Prometheus' (as honor_labels does
                # for dcgm-exporter in a cluster).
                "honor_labels": True,
                "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}],
            }],
        }
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        return path

    def set_targets(self, targets: list[tuple[str, dict[str, str]]]) -> None:
        """[(host:port, labels)]: the same address may stand for several Pods (distinct labels)."""
        groups = [{"targets": [address], "labels": labels} for address, labels in targets]
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.targets_file)  # atomic: Prometheus never reads half a file

    def start(self) -> None:
        if not self.targets_file.exists():
            self.set_targets([])
        config = self._write_config()
        log = (self.workdir / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"Prometheus did not become ready; log: {self.workdir / 'prometheus.log'}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None

    def query(self, promql: str) -> list[dict]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())["data"]["result"]


POD_IP = "<pod-ip>"  # placeholder in a mapping's address: each Pod's own IP


class PodTargets:
    """Maps the kwok Pods of an LLMService to a local process that stands for them.

    kwok runs no containers, so a real vLLM (or a stand-in exporter) on loopback answers for
    every Pod: each Pod becomes one scrape target with that Pod's `namespace` and `pod`
    labels. A thread follows the Pods as the autoscaler adds and removes them."""

    def __init__(self, cluster, prometheus: PrometheusServer, period: float = 1.0) -> None:
        self.cluster = cluster
        self.prometheus = prometheus
        self.period = period
        self.mappings: dict[tuple[str, str], tuple[str, str]] = {}  # (namespace, selector) -> (address, path)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def map(self, namespace: str, selector: str, address: str, metrics_path: str = "/metrics") -> None:
        with self._lock:
            self.mappings[(namespace, selector)] = (address, metrics_path)
        self.sync()

    def map_pod_ips(self, namespace: str, selector: str, port: int, metrics_path: str = "/metrics") -> None:
        """Real Pods (on the testbed's real node): each is scraped at its own IP and `port`."""
        with self._lock:
            self.mappings[(namespace, selector)] = (f"{POD_IP}:{port}", metrics_path)
        self.sync()

    def unmap(self, namespace: str) -> None:
        with self._lock:
            for key in [k for k in self.mappings if k[0] == namespace]:
                del self.mappings[key]

    def sync(self) -> None:
        with self._lock:
            mappings = dict(self.mappings)
        targets = []
        for (namespace, selector), (address, path) in mappings.items():
            result = self.cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json", check=False)
            if result.returncode != 0:
                continue
            for pod in json.loads(result.stdout)["items"]:
                if pod["metadata"].get("deletionTimestamp"):
                    continue
                labels = {"namespace": namespace, "pod": pod["metadata"]["name"], "__metrics_path__": path}
                target = address
                if address.startswith(POD_IP):
                    if not pod.get("status", {}).get("podIP"):
                        continue
                    target = address.replace(POD_IP, pod["status"]["podIP"])
                targets.append((target, labels))
        self.prometheus.set_targets(targets)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.sync()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
