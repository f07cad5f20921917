"""Smoke tests: the testbed behaves like a real cluster with GPU nodes.

Everything here runs against real kube-apiserver, kube-scheduler and
kube-controller-manager processes; kwok only plays the kubelet. The LeaderWorkerSet
controller (sigs.k8s.io/lws) runs beside them with its webhooks (hack/testbed/lws.sh).
"""

from __future__ import annotations

import json
import os

import pytest
import yaml

from support.cluster import Cluster

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
H100_NODES = {"gpu-h100-0", "gpu-h100-1", "gpu-h100-2", "gpu-h100-3"}
GPU_NODES = H100_NODES | {"gpu-rtx4090-0"}
H100 = "NVIDIA-H100-80GB-HBM3"


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


def node_names(cluster: Cluster) -> list[str]:
    return cluster.kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()


def test_six_fake_nodes_ready_with_gpu_capacity(cluster: Cluster) -> None:
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    by_name = {n["metadata"]["name"]: n for n in nodes}
    expected_gpus = {**dict.fromkeys(H100_NODES, "8"), "gpu-rtx4090-0": "1", "cpu-0": None}
    for name, gpus in expected_gpus.items():
        node = by_name[name]
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
        assert node["status"]["allocatable"].get("nvidia.com/gpu") == gpus
    for name in H100_NODES:
        h100 = by_name[name]["metadata"]["labels"]
        assert h100["nvidia.com/gpu.product"] == H100
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
    # Every Node is counted: the six fake ones and the real one when it runs (which no GPU Pod tolerates).
    assert f"0/{len(node_names(cluster))} nodes are available" in message
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


# LeaderWorkerSet (sigs.k8s.io/lws): the labels and env vars its Pod webhook writes.
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
LWS_GROUP_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/group-index"
LWS_WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
LWS_GROUP_KEY_LABEL = "leaderworkerset.sigs.k8s.io/group-key"


@pytest.fixture(scope="module")
def lws(cluster: Cluster) -> Cluster:
    """The LeaderWorkerSet API (hack/cluster.sh up runs its controller); in a cluster of the user's own
    without it, the tests that need it are skipped."""
    crd = cluster.get_json("crd", "leaderworkersets.leaderworkerset.x-k8s.io")
    if crd is None and os.environ.get("KUBECONFIG"):
        pytest.skip("no LeaderWorkerSet CRD in the cluster $KUBECONFIG points at")
    assert crd is not None, "hack/cluster.sh up should have installed the LeaderWorkerSet CRD"
    return cluster


def leaderworkerset(name: str, size: int = 2, replicas: int = 1, gpus: int = 8) -> dict:
    pod_spec = {
        "containers": [
            {"name": "engine", "image": "registry.example/engine:1",
             "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
        ],
        "tolerations": [GPU_TOLERATION],
        "nodeSelector": {"nvidia.com/gpu.product": H100},
    }
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "leaderWorkerTemplate": {"size": size, "workerTemplate": {"spec": pod_spec}},
        },
    }


def lws_pods(cluster: Cluster, namespace: str, name: str) -> dict[str, dict]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", f"{LWS_NAME_LABEL}={name}", "-o", "json").stdout
    return {p["metadata"]["name"]: p for p in json.loads(out)["items"]}


def running_and_ready(pods: dict[str, dict]) -> bool:
    return all(
        p["status"].get("phase") == "Running" and is_ready(p) and not p["metadata"].get("deletionTimestamp")
        for p in pods.values()
    )


def wait_for_groups(cluster: Cluster, namespace: str, name: str, groups: int) -> dict[str, dict]:
    """Every Pod of `groups` leader+worker groups Running and Ready, and the LWS counting them ready."""
    expected = {f"{name}-{g}{suffix}" for g in range(groups) for suffix in ("", "-1")}

    def all_ready() -> dict[str, dict] | None:
        pods = lws_pods(cluster, namespace, name)
        return pods if set(pods) == expected and running_and_ready(pods) else None

    pods = cluster.wait_for(f"{len(expected)} Running and Ready Pods of {name}", all_ready, timeout=120)
    cluster.wait_for(
        f"{name}'s status.readyReplicas to be {groups}",
        lambda: (cluster.get_json("lws", name, namespace) or {}).get("status", {}).get("readyReplicas") == groups,
        timeout=60,
    )
    return pods


def env_of(pod: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}


def test_lws_webhooks_select_only_lws_pods(lws: Cluster) -> None:
    """The Pod webhooks (failurePolicy Fail) are asked only about Pods of a LeaderWorkerSet, so every other
    Pod is created even while the controller is down."""
    for kind, name in (("mutatingwebhookconfiguration", "lws-mutating-webhook-configuration"),
                       ("validatingwebhookconfiguration", "lws-validating-webhook-configuration")):
        config = lws.get_json(kind, name)
        assert config is not None, f"{kind}/{name} is missing"
        pod_hooks = [h for h in config["webhooks"] if any("pods" in r["resources"] for r in h["rules"])]
        assert pod_hooks, f"{name} has no Pod webhook"
        for hook in pod_hooks:
            assert hook["objectSelector"] == {
                "matchExpressions": [{"key": LWS_NAME_LABEL, "operator": "Exists"}]
            }, hook["name"]


def test_leaderworkerset_groups_span_h100_nodes_and_scale(lws: Cluster, namespace: str) -> None:
    cluster = lws
    apply(cluster, namespace, leaderworkerset("mn"))
    pods = wait_for_groups(cluster, namespace, "mn", groups=1)
    leader, worker = pods["mn-0"], pods["mn-0-1"]

    # 8 GPUs each: the leader and its worker take two whole H100 nodes.
    nodes = {p["spec"]["nodeName"] for p in pods.values()}
    assert len(nodes) == 2 and nodes <= H100_NODES

    # The Pod webhook's labels and env vars, as multi-node engines read them.
    group_key = leader["metadata"]["labels"][LWS_GROUP_KEY_LABEL]
    assert leader["metadata"]["labels"][LWS_WORKER_INDEX_LABEL] == "0"
    assert leader["metadata"]["labels"][LWS_GROUP_INDEX_LABEL] == "0"
    assert worker["metadata"]["labels"][LWS_WORKER_INDEX_LABEL] == "1"
    assert worker["metadata"]["labels"][LWS_GROUP_INDEX_LABEL] == "0"
    assert worker["metadata"]["labels"][LWS_GROUP_KEY_LABEL] == group_key
    leader_address = f"mn-0.mn.{namespace}"
    assert env_of(worker) == {"LWS_LEADER_ADDRESS": leader_address, "LWS_GROUP_SIZE": "2", "LWS_WORKER_INDEX": "1"}
    assert env_of(leader) == {"LWS_LEADER_ADDRESS": leader_address, "LWS_GROUP_SIZE": "2", "LWS_WORKER_INDEX": "0"}
    assert worker["metadata"]["annotations"]["leaderworkerset.sigs.k8s.io/leader-name"] == "mn-0"

    # The headless Service that gives the leader its DNS name.
    service = cluster.get_json("service", "mn", namespace)
    assert service is not None and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {LWS_NAME_LABEL: "mn"}

    status = cluster.get_json("lws", "mn", namespace)["status"]
    assert status["replicas"] == 1
    assert status["hpaPodSelector"] == f"{LWS_NAME_LABEL}=mn,{LWS_WORKER_INDEX_LABEL}=0"

    # The scale subresource (what an HPA uses): a second group of two Pods; 4 H100 nodes hold both groups.
    cluster.kubectl("scale", "lws/mn", "-n", namespace, "--replicas=2")
    pods = wait_for_groups(cluster, namespace, "mn", groups=2)
    assert {p["spec"]["nodeName"] for p in pods.values()} == H100_NODES
    assert pods["mn-1-1"]["metadata"]["labels"][LWS_GROUP_INDEX_LABEL] == "1"
    assert env_of(pods["mn-1-1"])["LWS_LEADER_ADDRESS"] == f"mn-1.mn.{namespace}"
    scale = json.loads(cluster.kubectl(
        "get", "--raw", f"/apis/leaderworkerset.x-k8s.io/v1/namespaces/{namespace}/leaderworkersets/mn/scale"
    ).stdout)
    assert scale["spec"]["replicas"] == 2
    assert scale["status"]["replicas"] == 2

    # A deleted worker comes back (by default LWS recreates its whole group: RecreateGroupOnPodRestart).
    old_uid = pods["mn-0-1"]["metadata"]["uid"]
    cluster.kubectl("delete", "pod", "mn-0-1", "-n", namespace, "--wait=false")
    cluster.wait_for(
        "a new mn-0-1",
        lambda: (p := lws_pods(cluster, namespace, "mn").get("mn-0-1")) and p["metadata"]["uid"] != old_uid,
        timeout=60,
    )
    pods = wait_for_groups(cluster, namespace, "mn", groups=2)
    assert pods["mn-0-1"]["metadata"]["uid"] != old_uid
    assert env_of(pods["mn-0-1"])["LWS_WORKER_INDEX"] == "1"
