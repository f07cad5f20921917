"""Faults of the testbed's control plane: stop one of its processes (kube-apiserver, etcd) and start it again
exactly as kwokctl had started it (command line, environment, working directory, log file), updating
kwokctl's pid file so `hack/cluster.sh down` still stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from support.cluster import Cluster

CLUSTER_DIR = Path(os.environ.get("LLMOP_CACHE", Path.home() / ".cache" / "llm-operator")) / "cluster" / \
    "clusters" / "llm-operator"


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: str

    @property
    def pid_file(self) -> Path:
        return CLUSTER_DIR / "pids" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return CLUSTER_DIR / "logs" / f"{self.name}.log"


def component(name: str) -> tuple[int, Process]:
    """The running component `name` (kube-apiserver, etcd ...) and how to start it again."""
    pid = int((CLUSTER_DIR / "pids" / f"{name}.pid").read_text().strip())
    proc = Path(f"/proc/{pid}")
    argv = [arg.decode() for arg in (proc / "cmdline").read_bytes().split(b"\0") if arg]
    env = dict(item.decode().split("=", 1) for item in (proc / "environ").read_bytes().split(b"\0") if b"=" in item)
    return pid, Process(name, argv, env, os.readlink(proc / "cwd"))


def stop(pid: int, timeout: float = 60) -> None:
    """SIGKILL, as a crash, and wait until it is gone (its ports are free)."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        # A zombie whose parent (kwokctl, gone) never reaps it still has a /proc entry; its state says so.
        try:
            if "State:\tZ" in Path(f"/proc/{pid}/status").read_text():
                break
        except OSError:
            break
        time.sleep(0.1)


def start(process: Process) -> subprocess.Popen[bytes]:
    with process.log_file.open("ab") as log:
        child = subprocess.Popen(process.argv, env=process.env, cwd=process.cwd, stdout=log, stderr=log,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    process.pid_file.write_text(str(child.pid))
    return child


def apiserver_answers(cluster: Cluster) -> bool:
    return cluster.kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode == 0


def restart(cluster: Cluster, name: str, down_seconds: float = 0, timeout: float = 180) -> float:
    """Kill `name`, keep it down `down_seconds`, start it again; seconds until the apiserver answers /readyz.
    A start that exits at once (its port not yet released by the killed process, on a loaded machine) is
    tried again, so one slow kill does not take the whole testbed down for the tests that follow."""
    pid, process = component(name)
    stop(pid)
    time.sleep(down_seconds)
    started = time.monotonic()
    child = start(process)

    def ready() -> bool:
        nonlocal child
        if child.poll() is not None:
            time.sleep(2)
            child = start(process)
            return False
        return apiserver_answers(cluster)

    cluster.wait_for(f"the apiserver ready after {name} restarted", ready, timeout=timeout, interval=0.5)
    return time.monotonic() - started
