"""Multi-node serving end to end: the operator, the real LeaderWorkerSet controller (built from the Go
module proxy, its webhooks on; hack/testbed/lws.sh) and the scheduler, on four kwok nodes of 8x H100.

kwok runs no containers, so these tests check what the control plane does with what the operator
generates: groups of Pods placed on distinct nodes, scaled and recreated as groups, readiness counted per
group, and layouts refused before any Pod exists. The KV-cache signal of the autoscaling case comes from the
metrics stand-in (tests/support/metrics_standin.py): no vLLM spans two nodes on this machine.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml

from support.cluster import Cluster, OperatorProcess, condition
from support.hub_standin import HubStandIn
from support.metrics_standin import MetricsStandIn
from support.prometheus_server import PodTargets

H100 = "NVIDIA-H100-80GB-HBM3"
LEADER = "serving.llm-operator.io/role=leader"
INTERVAL = 2  # the operator fixture's --autoscale-interval


def two_nodes(name: str, **spec: object) -> dict:
    body: dict = {
        "engine": "vllm",
        "model": {"name": "meta-llama/Llama-4-Maverick-17B-128E-Instruct", "parameters": "402B"},
        "resources": {"gpus": 8, "nodes": 2, "gpuProduct": H100},
        "router": {"enabled": False},
    }
    body.update(spec)
    return {"apiVersion": "serving.llm-operator.io/v1alpha1", "kind": "LLMService",
            "metadata": {"name": name}, "spec": body}


@pytest.fixture(autouse=True)
def lws_installed(cluster: Cluster) -> None:
    if cluster.kubectl("get", "crd", "leaderworkersets.leaderworkerset.x-k8s.io", check=False).returncode != 0:
        pytest.fail("LeaderWorkerSet is not installed: hack/cluster.sh up installs it")


def apply(cluster: Cluster, namespace: str, obj: dict) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj))


def pods(cluster: Cluster, namespace: str, name: str, extra: str = "") -> list[dict]:
    selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/component=engine" + (f",{extra}" if extra else "")
    out = cluster.kubectl("get", "pods", "-n", namespace, "-o", "json", "-l", selector).stdout
    return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def ready_groups(cluster: Cluster, namespace: str, name: str, groups: int) -> list[dict] | None:
    """The Pods, when the LLMService is Ready with `groups` ready groups of two ready Pods each."""
    obj = cluster.get_json("llms", name, namespace) or {}
    status = obj.get("status") or {}
    found = pods(cluster, namespace, name)
    if (condition(obj, "Ready").get("status") == "True" and status.get("readyReplicas") == groups
            and len(found) == 2 * groups and all(ready(p) for p in found)):
        return found
    return None


def wait_groups(cluster: Cluster, namespace: str, name: str, groups: int, timeout: float = 120) -> list[dict]:
    return cluster.wait_for(f"{name}: {groups} ready groups", lambda: ready_groups(cluster, namespace, name, groups),
                            timeout=timeout)


def print_layout(cluster: Cluster, namespace: str) -> None:
    """What the closing note quotes: `kubectl get lws,pods -o wide`."""
    print(cluster.kubectl("get", "lws,pods", "-n", namespace, "-o", "wide").stdout)


def test_a_two_node_replica_is_one_group_on_two_nodes_and_scales_by_groups(
    operator: OperatorProcess, cluster: Cluster, namespace: str
) -> None:
    apply(cluster, namespace, two_nodes("maverick"))
    group = wait_groups(cluster, namespace, "maverick", 1)
    print_layout(cluster, namespace)
    assert len({p["spec"]["nodeName"] for p in group}) == 2, "a group's Pods must land on distinct nodes"
    roles = sorted(p["metadata"]["labels"]["serving.llm-operator.io/role"] for p in group)
    assert roles == ["leader", "worker"]
    worker = next(p for p in group if p["metadata"]["labels"]["serving.llm-operator.io/role"] == "worker")
    env = {e["name"] for e in worker["spec"]["containers"][0]["env"]}
    assert {"LWS_LEADER_ADDRESS", "LWS_WORKER_INDEX"} <= env, "LWS's Pod webhook fills the group's addresses"
    assert "--headless" in worker["spec"]["containers"][0]["args"]

    obj = cluster.get_json("llms", "maverick", namespace)
    assert obj["status"]["phase"] == "Ready"
    assert (obj["status"]["replicas"], obj["status"]["readyReplicas"]) == (1, 1)
    # The engine Service reaches the leaders only: they serve the API.
    endpoints = json.loads(cluster.kubectl(
        "get", "endpointslices", "-n", namespace, "-l", "kubernetes.io/service-name=maverick", "-o", "json",
    ).stdout)["items"]
    addresses = {a for s in endpoints for e in s.get("endpoints") or [] for a in e["addresses"]}
    leader = next(p for p in group if p["metadata"]["labels"]["serving.llm-operator.io/role"] == "leader")
    assert addresses == {leader["status"]["podIP"]}

    apply(cluster, namespace, two_nodes("maverick", replicas=2))
    scaled = wait_groups(cluster, namespace, "maverick", 2)
    print_layout(cluster, namespace)
    assert len(scaled) == 4
    assert len({p["spec"]["nodeName"] for p in scaled}) == 4, "four 8-GPU Pods need the four H100 nodes"
    lws = cluster.get_json("lws", "maverick", namespace)
    assert lws["spec"]["replicas"] == 2 and lws["status"]["readyReplicas"] == 2


def test_sglang_on_two_nodes_is_one_group_served_by_its_leader(
    operator: OperatorProcess, cluster: Cluster, namespace: str
) -> None:
    """SGLang's group: the same command on both Pods with their ranks; the leader alone serves."""
    apply(cluster, namespace, two_nodes("sgl", engine="sglang"))
    group = wait_groups(cluster, namespace, "sgl", 1)
    assert len({p["spec"]["nodeName"] for p in group}) == 2
    by_role = {p["metadata"]["labels"]["serving.llm-operator.io/role"]: p for p in group}
    for role, rank in (("leader", "0"), ("worker", "$(LWS_WORKER_INDEX)")):
        engine = by_role[role]["spec"]["containers"][0]
        assert engine["command"] == ["python3", "-m", "sglang.launch_server"]
        args = engine["args"]
        assert args[args.index("--node-rank") + 1] == rank
        assert args[args.index("--dist-init-addr") + 1] == "$(LWS_LEADER_ADDRESS):20000"
        assert {"LWS_LEADER_ADDRESS", "LWS_WORKER_INDEX"} <= {e["name"] for e in engine["env"]}
    assert "ports" not in by_role["worker"]["spec"]["containers"][0]
    endpoints = json.loads(cluster.kubectl(
        "get", "endpointslices", "-n", namespace, "-l", "kubernetes.io/service-name=sgl", "-o", "json",
    ).stdout)["items"]
    addresses = {a for s in endpoints for e in s.get("endpoints") or [] for a in e["addresses"]}
    assert addresses == {by_role["leader"]["status"]["podIP"]}


def test_a_group_whose_worker_is_deleted_is_recreated(
    operator: OperatorProcess, cluster: Cluster, namespace: str
) -> None:
    apply(cluster, namespace, two_nodes("regroup"))
    group = wait_groups(cluster, namespace, "regroup", 1)
    worker = next(p for p in group if p["metadata"]["labels"]["serving.llm-operator.io/role"] == "worker")
    before = {p["metadata"]["uid"] for p in group}
    cluster.kubectl("delete", "pod", worker["metadata"]["name"], "-n", namespace, "--wait=false")
    # RecreateGroupOnPodRestart: the whole group comes back (a pipeline cannot lose a stage and go on).
    def recreated() -> list[dict] | None:
        found = ready_groups(cluster, namespace, "regroup", 1)
        return found if found and worker["metadata"]["uid"] not in {p["metadata"]["uid"] for p in found} else None

    again = cluster.wait_for("the group recreated and ready", recreated, timeout=120)
    assert len(again) == 2
    assert {p["metadata"]["uid"] for p in again} != before


def test_a_layout_that_cannot_fit_is_refused_before_any_pod(
    operator: OperatorProcess, cluster: Cluster, namespace: str
) -> None:
    # DeepSeek-V3's 671B in bf16 is 1250 GiB: two nodes of 8x H100 are not enough.
    apply(cluster, namespace, two_nodes("deepseek", model={"name": "deepseek-ai/DeepSeek-V3", "parameters": "671B"}))
    # One Pod cannot hold 16 H100s: no H100 node has them.
    apply(cluster, namespace, two_nodes("wide", resources={"gpus": 16, "nodes": 1, "gpuProduct": H100},
                                        serving={"tensorParallelSize": 16}))

    def refused(name: str) -> dict | None:
        obj = cluster.get_json("llms", name, namespace) or {}
        return obj if condition(obj, "ModelFits").get("status") == "False" else None

    deepseek = cluster.wait_for("deepseek refused", lambda: refused("deepseek"), timeout=60)
    message = condition(deepseek, "ModelFits")["message"]
    assert "on 2 nodes" in message and "resources.nodes: 3" in message
    assert condition(deepseek, "Stalled")["status"] == "True"
    wide = cluster.wait_for("wide refused", lambda: refused("wide"), timeout=60)
    assert condition(wide, "ModelFits")["reason"] == "TooManyGPUsPerNode"
    assert "set resources.gpus: 8 and resources.nodes: 2" in condition(wide, "ModelFits")["message"]
    time.sleep(2)
    for name in ("deepseek", "wide"):
        assert pods(cluster, namespace, name) == []
        assert cluster.get_json("lws", name, namespace) is None
        assert cluster.get_json("deployment", name, namespace) is None


def test_the_autoscaler_scales_groups_through_the_scale_subresource(
    operator: OperatorProcess, cluster: Cluster, namespace: str, scrape_targets: PodTargets
) -> None:
    with MetricsStandIn() as standin:
        standin.set(**{"vllm:num_requests_waiting": 0, "vllm:num_requests_running": 3,
                       "vllm:kv_cache_usage_perc": 0.2})
        apply(cluster, namespace, two_nodes("elastic", autoscaling={
            "enabled": True, "minReplicas": 1, "maxReplicas": 2, "targetKVCacheUsage": 0.8,
            "targetTimeToFirstTokenSeconds": 0}))
        wait_groups(cluster, namespace, "elastic", 1)
        # The leaders export the engine's metrics; workers serve none.
        scrape_targets.map(namespace, f"app.kubernetes.io/instance=elastic,{LEADER}", standin.address)
        time.sleep(4 * INTERVAL)
        assert cluster.get_json("llms", "elastic", namespace)["status"]["desiredReplicas"] == 1
        standin.set(**{"vllm:kv_cache_usage_perc": 0.97})
        wait_groups(cluster, namespace, "elastic", 2)
    scrape_targets.unmap(namespace)
    lws = json.loads(cluster.kubectl("get", "lws", "elastic", "-n", namespace, "-o", "json",
                                     "--show-managed-fields").stdout)
    assert lws["spec"]["replicas"] == 2
    # The count was written through the scale subresource, under the operator's field manager.
    managers = {(m["manager"], m.get("subresource", "")) for m in lws["metadata"]["managedFields"]}
    assert ("llm-operator", "scale") in managers, managers
    events = json.loads(cluster.kubectl(
        "get", "events", "-n", namespace, "-o", "json",
        "--field-selector", "involvedObject.name=elastic,reason=Scaled",
    ).stdout)["items"]
    assert any("from 1 to 2" in e["message"] for e in events)


def test_without_a_typed_count_the_fit_check_reads_the_hub_once(
    operator: OperatorProcess, cluster: Cluster, namespace: str, hub: HubStandIn
) -> None:
    """spec.model.parameters unset: the operator reads Maverick's count from the Hub (the loopback stand-in,
    HF_ENDPOINT) and records it; one node of 8x H100 is refused with the two-node layout, two nodes serve."""
    maverick = {"name": "meta-llama/Llama-4-Maverick-17B-128E-Instruct"}
    apply(cluster, namespace, two_nodes("one-node", model=maverick, resources={"gpus": 8, "gpuProduct": H100}))
    apply(cluster, namespace, two_nodes("from-hub", model=maverick))

    def recorded(name: str) -> dict | None:
        obj = cluster.get_json("llms", name, namespace) or {}
        return obj if (obj.get("status") or {}).get("modelSize") and condition(obj, "ModelFits") else None

    one_node = cluster.wait_for("one-node's count recorded", lambda: recorded("one-node"), timeout=60)
    assert one_node["status"]["modelSize"]["parameters"] > 4e11
    assert one_node["status"]["modelSize"]["revision"] == "main"
    fits = condition(one_node, "ModelFits")
    assert fits["status"] == "False"
    assert "fits on 2 nodes of 8x NVIDIA-H100-80GB-HBM3 with tensorParallelSize 8 and pipelineParallelSize 2" \
        in fits["message"]
    wait_groups(cluster, namespace, "from-hub", 1)
    assert condition(cluster.get_json("llms", "from-hub", namespace), "ModelFits")["status"] == "True"
    info = f"/api/models/{maverick['name']}/revision/main"
    asked = hub.paths().count(info)
    time.sleep(12)  # two resyncs (--resync-interval 5): the recorded count is used, the Hub not asked again
    assert hub.paths().count(info) == asked
