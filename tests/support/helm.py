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
