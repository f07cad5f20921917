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
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cluster import OPERATOR_NAMESPACE_PREFIX, Cluster, OperatorProcess, condition
from support.hub_standin import HubStandIn
from support.prometheus_server import PodTargets, PrometheusServer
from support.real_node import REAL_NODE, local_image

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
def real_node(cluster: Cluster) -> str:
    """The testbed's real node (hack/cluster.sh up starts it); in a cluster of the user's own, tests
    that need it are skipped."""
    node = cluster.get_json("node", REAL_NODE)
    if node is None and os.environ.get("KUBECONFIG"):
        pytest.skip(f"no node {REAL_NODE} in the cluster $KUBECONFIG points at (the testbed's real node)")
    assert node is not None, f"hack/cluster.sh up should have started the real node {REAL_NODE}"
    assert condition(node, "Ready").get("status") == "True", f"node {REAL_NODE} is not Ready"
    return REAL_NODE


@pytest.fixture(scope="session")
def images(real_node: str) -> dict[str, str]:
    """The stand-in images, built (or found) and loaded into the real node: vLLM 0.32.0's CPU build
    for vllm/vllm-openai:v0.32.0 (whose GPU build cannot run here) and LiteLLM 1.108.7 from the
    hash-pinned lock for ghcr.io/berriai/litellm-non_root:v1.108.7."""
    return {"vllm": local_image("vllm-cpu"), "router": local_image("litellm")}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny generated Llama (random weights, real tokenizer files), made once per session."""
    from support.vllm_server import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def volumes(cluster: Cluster) -> Iterator[list[str]]:
    """Names of the seeded PersistentVolumes a test made; deleted (Retain: the folder stays) after it."""
    names: list[str] = []
    yield names
    for name in names:
        cluster.kubectl("delete", "pv", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def crd_installed(cluster: Cluster) -> Cluster:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/llmservices.serving.llm-operator.io",
    )
    return cluster


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace; the session operator serves it only when the test asked for the operator."""
    prefix = OPERATOR_NAMESPACE_PREFIX if "operator" in request.fixturenames else "t"
    with cluster.fresh_namespace(prefix) as name:
        yield name


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A real Prometheus on loopback; the operator's autoscaler reads it."""
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def scrape_targets(cluster: Cluster, prometheus: PrometheusServer) -> Iterator[PodTargets]:
    """Keeps Prometheus' targets in step with the kwok Pods that local processes stand for."""
    targets = PodTargets(cluster, prometheus)
    targets.start()
    yield targets
    targets.stop()


AUTOSCALE_INTERVAL_SECONDS = 2


@pytest.fixture(scope="session")
def hub() -> Iterator[HubStandIn]:
    """The Hugging Face Hub the operator reads parameter counts from: a stand-in on loopback serving
    fixtures in the Hub's format (tests/support/hub_standin.py), since nothing may leave this machine."""
    with HubStandIn() as server:
        yield server


@pytest.fixture(scope="session")
def operator(
    crd_installed: Cluster, prometheus: PrometheusServer, hub: HubStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        crd_installed, tmp_path_factory.mktemp("operator") / "operator.log",
        extra_args=("--prometheus-url", prometheus.url, "--autoscale-interval", str(AUTOSCALE_INTERVAL_SECONDS)),
        env={"HF_ENDPOINT": hub.endpoint},
    )
    process.start()
    yield process
    process.stop()
    print(f"operator log: {process.log_path}")
