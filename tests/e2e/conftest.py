"""Fixtures for tests against a real Kubernetes control plane.

The session fixture `cluster` uses the cluster that $KUBECONFIG points at when the user
sets one (kind, a real cluster) and leaves it as it found it. Otherwise it runs
`hack/cluster.sh up` (building the binaries when they are missing) and, if it started the
cluster itself, deletes it again at the end unless LLMOP_KEEP_CLUSTER=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO_ROOT / "hack" / "cluster.sh"
CRD_DIR = REPO_ROOT / "crds"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)


def _hack(*args: str) -> str:
    return subprocess.run(
        ["bash", str(CLUSTER_SH), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _tools_bin() -> Path:
    line = subprocess.run(
        ["bash", "-c", f". {REPO_ROOT}/hack/lib.sh && echo $TOOLS_BIN"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    return Path(line)


@dataclass
class Cluster:
    kubeconfig: str
    kubectl_path: str
    started_here: bool = False
    env: dict[str, str] = field(default_factory=dict)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.kubectl_path, "--kubeconfig", self.kubeconfig, *args],
            input=input, capture_output=True, text=True, timeout=timeout, env=self.env,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}"
            )
        return result

    def wait_for(self, what: str, predicate, timeout: float = 60, interval: float = 0.5):
        """Poll `predicate()` until it returns a truthy value; fail with `what` on timeout."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    user_kubeconfig = os.environ.get("KUBECONFIG")
    tools_bin = _tools_bin()
    if user_kubeconfig:
        kubectl = shutil.which("kubectl") or str(tools_bin / "kubectl")
        env = dict(os.environ)
        yield Cluster(kubeconfig=user_kubeconfig, kubectl_path=kubectl, env=env)
        return
    kubeconfig = _hack("kubeconfig")
    was_running = "state:      running" in _hack("status")
    subprocess.run(["bash", str(CLUSTER_SH), "up"], check=True)
    env = dict(os.environ, KUBECONFIG=kubeconfig, PATH=f"{tools_bin}:{os.environ['PATH']}")
    yield Cluster(
        kubeconfig=kubeconfig, kubectl_path=str(tools_bin / "kubectl"),
        started_here=not was_running, env=env,
    )
    if not was_running and os.environ.get("LLMOP_KEEP_CLUSTER") != "1":
        subprocess.run(["bash", str(CLUSTER_SH), "down"], check=False)


@pytest.fixture(scope="session")
def crd_installed(cluster: Cluster) -> Cluster:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/llmservices.serving.llm-operator.io",
    )
    return cluster


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    # The ServiceAccount controller creates `default` shortly after the namespace; Pods need it.
    cluster.wait_for(
        f"serviceaccount default in {name}",
        lambda: cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


class OperatorProcess:
    """`llm-operator run` as a real subprocess against the test cluster."""

    def __init__(self, cluster: Cluster, log_path: Path) -> None:
        self.cluster = cluster
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        executable = Path(os.environ.get("VIRTUAL_ENV", REPO_ROOT / ".venv")) / "bin" / "llm-operator"
        command = [str(executable) if executable.exists() else "llm-operator"]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*command, "run", "--all-namespaces", "--kubeconfig", self.cluster.kubeconfig, "--log-level", "info"],
            stdout=log, stderr=subprocess.STDOUT, env=self.cluster.env, start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as when a node dies under the operator."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture(scope="session")
def operator(crd_installed: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    process = OperatorProcess(crd_installed, tmp_path_factory.mktemp("operator") / "operator.log")
    process.start()
    yield process
    process.stop()
    print(f"operator log: {process.log_path}")
