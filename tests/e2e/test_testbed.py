"""Smoke tests: the testbed behaves like a real cluster with GPU nodes.

Everything here runs against real kube-apiserver, kube-scheduler and
kube-controller-manager processes; kwok only plays the kubelet.
"""

from __future__ import annotations

import json

import yaml

from support.cluster import Cluster

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
GPU_NODES = {"gpu-h100-0", "gpu-h100-1", "gpu-rtx4090-0"}


def deployment(name: str, replicas: int = 1, gpus: int = 0, tolerate_gpu: bool = False) -> dict:
    container: dict = {"name": "app", "image": "registry.example/app:1"}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    pod_spec: dict = {"containers": [container]}
    if tolerate_gpu:
        pod_spec["tolerations"] = [GPU_TOLERATION]
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def apply(cluster: Cluster, namespace: str, obj: dict) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj))


def pods(cluster: Cluster, namespace: str, app: str) -> list[dict]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", f"app={app}", "-o", "json").stdout
    return json.loads(out)["items"]


def is_ready(pod: dict) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_four_nodes_ready_with_gpu_capacity(cluster: Cluster) -> None:
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    by_name = {n["metadata"]["name"]: n for n in nodes}
    expected_gpus = {"gpu-h100-0": "8", "gpu-h100-1": "8", "gpu-rtx4090-0": "1", "cpu-0": None}
    for name, gpus in expected_gpus.items():
        node = by_name[name]
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
        assert node["status"]["allocatable"].get("nvidia.com/gpu") == gpus
    h100 = by_name["gpu-h100-0"]["metadata"]["labels"]
    assert h100["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert h100["nvidia.com/gpu.memory"] == "81559"
    assert by_name["gpu-rtx4090-0"]["metadata"]["labels"]["nvidia.com/gpu.memory"] == "24564"
    for name in GPU_NODES:
        assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in by_name[name]["spec"][
            "taints"
        ]


def test_gpu_pod_is_scheduled_running_and_ready(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, deployment("one-gpu", gpus=1, tolerate_gpu=True))
    cluster.kubectl("rollout", "status", "deployment/one-gpu", "-n", namespace, "--timeout=90s")
    [pod] = pods(cluster, namespace, "one-gpu")
    assert pod["spec"]["nodeName"] in GPU_NODES
    assert pod["status"]["phase"] == "Running"
    assert is_ready(pod)


def test_pod_asking_more_gpus_than_any_node_stays_pending(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, deployment("nine-gpus", gpus=9, tolerate_gpu=True))

    def failed_scheduling_event() -> str | None:
        events = cluster.kubectl(
            "get", "events", "-n", namespace, "--field-selector", "reason=FailedScheduling", "-o", "json"
        ).stdout
        messages = [e["message"] for e in json.loads(events)["items"]]
        return next((m for m in messages if "Insufficient nvidia.com/gpu" in m), None)

    message = cluster.wait_for("a FailedScheduling event", failed_scheduling_event, timeout=60)
    # Every Node is counted: the four fake ones and the real one (which no GPU Pod tolerates).
    assert "0/5 nodes are available" in message
    [pod] = pods(cluster, namespace, "nine-gpus")
    assert pod["status"]["phase"] == "Pending"
    assert not pod["spec"].get("nodeName")


def test_pods_without_the_toleration_never_land_on_gpu_nodes(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, deployment("plain", replicas=6))
    cluster.kubectl("rollout", "status", "deployment/plain", "-n", namespace, "--timeout=90s")
    assert {p["spec"]["nodeName"] for p in pods(cluster, namespace, "plain")} == {"cpu-0"}

    # Asking for a GPU without tolerating the taint leaves the Pod unschedulable.
    apply(cluster, namespace, deployment("gpu-no-toleration", gpus=1))
    cluster.wait_for(
        "the untolerated-taint reason",
        lambda: any(
            "untolerated taint" in c.get("message", "")
            for p in pods(cluster, namespace, "gpu-no-toleration")
            for c in p["status"].get("conditions", [])
        ),
    )
    assert all(not p["spec"].get("nodeName") for p in pods(cluster, namespace, "gpu-no-toleration"))


def test_deleting_an_owner_removes_its_dependents(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    owner_uid = cluster.kubectl("get", "configmap", "owner", "-n", namespace, "-o", "jsonpath={.metadata.uid}").stdout
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
        },
    }
    apply(cluster, namespace, dependent)
    apply(cluster, namespace, deployment("collected", replicas=2))
    cluster.kubectl("rollout", "status", "deployment/collected", "-n", namespace, "--timeout=90s")

    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    cluster.kubectl("delete", "deployment", "collected", "-n", namespace)
    cluster.wait_for(
        "the garbage collector to delete the dependent ConfigMap",
        lambda: cluster.kubectl("get", "configmap", "dependent", "-n", namespace, check=False).returncode != 0,
    )
    cluster.wait_for(
        "the garbage collector to delete the Deployment's ReplicaSet and Pods",
        lambda: not pods(cluster, namespace, "collected")
        and "No resources" in cluster.kubectl("get", "rs", "-n", namespace, "-l", "app=collected").stderr,
    )


def test_service_account_without_rbac_is_forbidden(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    token = cluster.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    server = cluster.kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}").stdout

    def as_nobody(*args: str):
        # A kubeconfig of its own, so no admin client certificate rides along with the token.
        return cluster.kubectl(
            "--kubeconfig=/dev/null", f"--server={server}", "--insecure-skip-tls-verify", f"--token={token}",
            *args, check=False,
        )

    denied = as_nobody("get", "pods", "-n", namespace)
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr
    assert f"system:serviceaccount:{namespace}:nobody" in denied.stderr

    # The same token works once RBAC allows it, so the refusal above was authorization.
    cluster.kubectl("create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", namespace)
    cluster.kubectl(
        "create", "rolebinding", "nobody-reads-pods", "--role=pod-reader",
        f"--serviceaccount={namespace}:nobody", "-n", namespace,
    )
    cluster.wait_for("RBAC to allow the token", lambda: as_nobody("get", "pods", "-n", namespace).returncode == 0)
