"""The engine LeaderWorkerSet of a model served across nodes: groups, roles, vLLM's multi-node flags,
GPUs and /dev/shm per Pod, the group's Pods on distinct nodes, and the leader-only engine Service."""

from __future__ import annotations

from typing import Any

import pytest

from llm_operator.engines import sglang
from llm_operator.plan import desired_objects
from llm_operator.resources import build_leader_worker_set, build_service
from llm_operator.resources.common import ROLE_LABEL
from llm_operator.resources.leaderworkerset import GROUP_KEY_LABEL
from unit.factories import UID, env_by_name, make_service

H100 = "NVIDIA-H100-80GB-HBM3"
TWO_NODES: dict[str, Any] = {"model": {"name": "meta-llama/Llama-4-Maverick-17B-128E-Instruct"},
                             "resources": {"gpus": 8, "nodes": 2, "gpuProduct": H100}}


def lws(patch: dict[str, Any] | None = None, autoscaled: int | None = None) -> dict[str, Any]:
    return build_leader_worker_set(make_service("vllm", {**TWO_NODES, **(patch or {})}), UID, autoscaled)


def container(template: dict[str, Any]) -> dict[str, Any]:
    (engine,) = template["spec"]["containers"]
    return engine


def flag_value(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_a_replica_is_a_group_of_one_leader_and_nodes_minus_one_workers() -> None:
    obj = lws({"replicas": 3})
    assert (obj["apiVersion"], obj["kind"]) == ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")
    assert obj["metadata"]["ownerReferences"][0]["uid"] == UID
    assert obj["spec"]["replicas"] == 3
    template = obj["spec"]["leaderWorkerTemplate"]
    assert template["size"] == 2
    assert template["restartPolicy"] == "RecreateGroupOnPodRestart"
    assert template["leaderTemplate"]["metadata"]["labels"][ROLE_LABEL] == "leader"
    assert template["workerTemplate"]["metadata"]["labels"][ROLE_LABEL] == "worker"
    assert obj["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"] == {"maxSurge": 1, "maxUnavailable": 0}
    # LWS's shared headless Service would be named like the engine Service: one per group instead.
    assert obj["spec"]["networkConfig"] == {"subdomainPolicy": "UniquePerReplica"}


def test_leader_and_workers_run_one_vllm_across_the_nodes() -> None:
    template = lws()["spec"]["leaderWorkerTemplate"]
    leader, worker = container(template["leaderTemplate"]), container(template["workerTemplate"])
    for args in (leader["args"], worker["args"]):
        assert flag_value(args, "--tensor-parallel-size") == "8"
        assert flag_value(args, "--pipeline-parallel-size") == "2"
        assert flag_value(args, "--distributed-executor-backend") == "mp"
        assert flag_value(args, "--nnodes") == "2"
        assert flag_value(args, "--master-addr") == "$(LWS_LEADER_ADDRESS)"
        assert args[0] == "meta-llama/Llama-4-Maverick-17B-128E-Instruct"
    assert flag_value(leader["args"], "--node-rank") == "0"
    assert flag_value(worker["args"], "--node-rank") == "$(LWS_WORKER_INDEX)"
    assert "--headless" in worker["args"]
    assert "--headless" not in leader["args"]
    for engine in (leader, worker):
        assert env_by_name(engine["env"])["VLLM_HOST_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}


def test_extra_args_come_last_on_both_roles() -> None:
    template = lws({"serving": {"extraArgs": ["--enforce-eager"]}})["spec"]["leaderWorkerTemplate"]
    assert container(template["leaderTemplate"])["args"][-1] == "--enforce-eager"
    assert container(template["workerTemplate"])["args"][-1] == "--enforce-eager"


def test_only_the_leader_serves_and_is_probed() -> None:
    template = lws()["spec"]["leaderWorkerTemplate"]
    leader, worker = container(template["leaderTemplate"]), container(template["workerTemplate"])
    assert leader["ports"][0]["containerPort"] == 8000
    assert leader["readinessProbe"]["httpGet"]["path"] == "/health"
    assert "startupProbe" in leader
    for key in ("ports", "readinessProbe", "startupProbe", "livenessProbe"):
        assert key not in worker
    assert "prometheus.io/scrape" in template["leaderTemplate"]["metadata"]["annotations"]
    assert "annotations" not in template["workerTemplate"]["metadata"]


@pytest.mark.parametrize("role", ["leaderTemplate", "workerTemplate"])
def test_every_pod_asks_for_its_node_gpus_shm_and_product(role: str) -> None:
    pod = lws()["spec"]["leaderWorkerTemplate"][role]
    engine = container(pod)
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": H100}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    shm = next(v for v in pod["spec"]["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in engine["volumeMounts"]


@pytest.mark.parametrize("role", ["leaderTemplate", "workerTemplate"])
def test_a_groups_pods_land_on_distinct_nodes_and_user_affinity_is_kept(role: str) -> None:
    user_rule = {"topologyKey": "topology.kubernetes.io/zone", "labelSelector": {"matchLabels": {"a": "b"}}}
    affinity = {"nodeAffinity": {"x": 1},
                "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [user_rule]}}
    pod = lws({"resources": {**TWO_NODES["resources"], "affinity": affinity}})["spec"]["leaderWorkerTemplate"][role]
    anti = pod["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0] == user_rule
    assert anti[1]["topologyKey"] == "kubernetes.io/hostname"
    assert anti[1]["matchLabelKeys"] == [GROUP_KEY_LABEL]
    assert anti[1]["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "llm"
    assert pod["spec"]["affinity"]["nodeAffinity"] == {"x": 1}


def test_autoscaled_groups_within_bounds() -> None:
    obj = lws({"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 3}}, autoscaled=5)
    assert obj["spec"]["replicas"] == 3


def test_the_engine_service_selects_only_leaders() -> None:
    service = build_service(make_service("vllm", TWO_NODES), UID)
    assert service["spec"]["selector"][ROLE_LABEL] == "leader"
    single = build_service(make_service("vllm", {}), UID)
    assert ROLE_LABEL not in single["spec"]["selector"]


def test_the_plan_builds_a_leader_worker_set_instead_of_a_deployment() -> None:
    kinds = [o["kind"] for o in desired_objects(make_service("vllm", TWO_NODES), UID)]
    assert "LeaderWorkerSet" in kinds
    assert "Deployment" in kinds  # the router's
    assert kinds.count("Deployment") == 1
    single = [o["kind"] for o in desired_objects(make_service("vllm", {}), UID)]
    assert "LeaderWorkerSet" not in single
    assert single.count("Deployment") == 2


def sglang_lws(patch: dict[str, Any] | None = None) -> dict[str, Any]:
    return build_leader_worker_set(make_service("sglang", {**TWO_NODES, **(patch or {})}), UID, None)


def test_sglang_runs_the_same_command_on_every_node_with_its_rank() -> None:
    template = sglang_lws({"serving": {"extraArgs": ["--trust-remote-code"]}})["spec"]["leaderWorkerTemplate"]
    leader, worker = container(template["leaderTemplate"]), container(template["workerTemplate"])
    for engine in (leader, worker):
        args = engine["args"]
        assert engine["command"] == ["python3", "-m", "sglang.launch_server"]
        assert flag_value(args, "--model-path") == "meta-llama/Llama-4-Maverick-17B-128E-Instruct"
        assert flag_value(args, "--tp-size") == "8"
        assert flag_value(args, "--pp-size") == "2"
        assert flag_value(args, "--nnodes") == "2"
        assert flag_value(args, "--dist-init-addr") == "$(LWS_LEADER_ADDRESS):20000"
        assert args[-1] == "--trust-remote-code"
        assert engine["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert flag_value(leader["args"], "--node-rank") == "0"
    assert flag_value(worker["args"], "--node-rank") == "$(LWS_WORKER_INDEX)"
    # A node of rank 1 or more serves no HTTP in SGLang: the leader alone has the port and the probes.
    assert leader["ports"][0]["containerPort"] == 30000
    assert "ports" not in worker and "readinessProbe" not in worker


def test_sglang_tensor_parallel_across_the_nodes_has_one_stage() -> None:
    template = sglang_lws({"serving": {"tensorParallelSize": 16}})["spec"]["leaderWorkerTemplate"]
    args = container(template["leaderTemplate"])["args"]
    assert flag_value(args, "--tp-size") == "16"
    assert flag_value(args, "--pp-size") == "1"


def test_sglang_on_one_node_has_no_group_flags() -> None:
    args = sglang.container(make_service("sglang", {"resources": {"gpus": 4}})).args
    for name in ("--nnodes", "--node-rank", "--dist-init-addr", "--pp-size"):
        assert name not in args
