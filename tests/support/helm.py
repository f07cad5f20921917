"""Real helm against the test cluster."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from support.cluster import REPO_ROOT, Cluster

CHART = REPO_ROOT / "charts" / "llm-operator"


def helm_path(cluster: Cluster) -> str:
    found = shutil.which("helm", path=cluster.env.get("PATH")) or str(Path(cluster.kubectl_path).parent / "helm")
    if not Path(found).exists():
        pytest.skip("helm is not installed (hack/build-tools.sh builds it)")
    return found


def helm(cluster: Cluster, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [helm_path(cluster), "--kubeconfig", cluster.kubeconfig, *args],
        capture_output=True, text=True, timeout=timeout, env=cluster.env,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}")
    return result


def metric(text: str, name: str, **labels: str) -> float | None:
    """The sum of the samples of `name` in Prometheus' text format whose labels include `labels`; None when
    there is none. Enough for the operator's own series (no escaped quotes or commas in their label values)."""
    found = None
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        metric_name, _, label_text = series.partition("{")
        if metric_name != name:
            continue
        present = dict(part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part)
        if all(present.get(key) == f'"{wanted}"' for key, wanted in labels.items()):
            found = (found or 0.0) + float(value)
    return found


def pod_metrics(cluster: Cluster, namespace: str, pod: str, port: int = 8081) -> str:
    """A Pod's /metrics, through the apiserver's Pod proxy (no port-forward, no Service)."""
    return cluster.kubectl("get", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/metrics").stdout


def lease_holder(cluster: Cluster, namespace: str, name: str) -> str | None:
    """The Lease's spec.holderIdentity (the leader replica's Pod name), or None."""
    lease = cluster.get_json("lease", name, namespace)
    return ((lease or {}).get("spec") or {}).get("holderIdentity") or None
