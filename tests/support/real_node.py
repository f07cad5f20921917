"""The testbed's real node (hack/testbed/node.sh) as the e2e tests use it: where a Pod must go to run
for real, and the local images it can run (built by hack/build-images.sh, loaded into its containerd)."""

from __future__ import annotations

import subprocess
from functools import cache

from support.cluster import REPO_ROOT

REAL_NODE = "real-0"
REAL_NODE_SELECTOR = {"llm-operator.io/node": "real"}
# The real node's taint: only Pods that tolerate it land there.
REAL_NODE_TOLERATION = {"key": "llm-operator.io/real-node", "operator": "Equal", "value": "true",
                        "effect": "NoSchedule"}
NODE_IP = "10.244.0.1"
POD_CIDR = "10.244.0.0/24"
KUBERNETES_SERVICE_IP = "10.96.0.1"
CONTAINERD_SOCK = "/run/llm-operator-node/containerd.sock"  # hack/testbed/node.sh's NODE_RUN


def _hack(script: str, *args: str, timeout: float = 1800) -> str:
    result = subprocess.run(["bash", str(REPO_ROOT / "hack" / script), *args],
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"hack/{script} {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


@cache
def local_image(name: str) -> str:
    """Build (or find) a local image and load it into the real node; its reference."""
    ref = _hack("build-images.sh", name)
    load(ref)
    return ref


def load(ref: str) -> None:
    _hack("cluster.sh", "load", ref, timeout=600)


def tag(ref: str, new_ref: str) -> str:
    """A second name for a local image (a new tag for `helm upgrade`), loaded into the node."""
    subprocess.run(["podman", "tag", ref, new_ref], check=True, capture_output=True, timeout=60)
    load(new_ref)
    return new_ref


def sigkill_container(pod: dict) -> None:
    """SIGKILL the main process of a Pod's (first) container on the real node, as the kernel's OOM killer or a
    crash would end it; the kubelet then restarts the container."""
    container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    subprocess.run(["ctr", "--address", CONTAINERD_SOCK, "-n", "k8s.io", "task", "kill", "--signal", "SIGKILL",
                    container_id], check=True, capture_output=True, timeout=30)


def on_real_node(pod_spec: dict) -> dict:
    """`pod_spec` with the real node's selector and toleration added."""
    return {**pod_spec, "nodeSelector": dict(REAL_NODE_SELECTOR), "tolerations": [dict(REAL_NODE_TOLERATION)]}


def seeded_model_volume(cluster, namespace: str, claim: str, model_dir, repo_id: str, root) -> str:
    """A PersistentVolume pre-bound to the claim `claim` (which the operator creates for spec.storage),
    holding `model_dir` as the Hugging Face cache entry of `repo_id`: what a platform team does with
    pre-seeded weights. The volume is a folder on this host, which is the real node. Its name."""
    import shutil
    import uuid

    revision = uuid.uuid5(uuid.NAMESPACE_URL, repo_id).hex + "00000000"  # 40 hex digits, like a commit
    entry = root / "huggingface" / "hub" / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(model_dir, entry / "snapshots" / revision)
    (entry / "refs").mkdir(parents=True, exist_ok=True)
    (entry / "refs" / "main").write_text(revision)
    return host_volume(cluster, namespace, claim, root)


def host_volume(cluster, namespace: str, claim: str, root) -> str:
    """A PersistentVolume on the folder `root` of this host (the real node), pre-bound to the claim
    `claim` and handed over to UID 1000, as which the engines run: they write their own caches next to
    the weights, and a hostPath volume gets no fsGroup, so the folder is chowned as a provisioner would.
    Its name."""
    import json
    import os

    for path in [root, *root.rglob("*")]:
        os.chown(path, 1000, 1000)
    name = f"seeded-{namespace}-{claim}"[:63]
    volume = {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "standard",
            "claimRef": {"namespace": namespace, "name": claim},
            "hostPath": {"path": str(root), "type": "Directory"},
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(volume))
    return name
