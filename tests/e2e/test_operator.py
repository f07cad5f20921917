"""The operator against the real control plane: LLMServices become engine workloads on
the right fake GPU nodes, status follows, drift is repaired, deletion is garbage collected."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
import yaml

from support.cluster import Cluster, OperatorProcess, condition

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "manifests" / "examples").glob("*.yaml"))
GPU_PRODUCT = "nvidia.com/gpu.product"


def llmservice(name: str, **spec: object) -> dict:
    body = {
        "engine": "vllm",
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct", "parameters": "8B"},
        "resources": {"gpus": 1, "gpuProduct": "NVIDIA-H100-80GB-HBM3"},
        "serving": {"maxModelLen": 8192},
    }
    body.update(spec)
    return {"apiVersion": "serving.llm-operator.io/v1alpha1", "kind": "LLMService",
            "metadata": {"name": name}, "spec": body}


def apply(cluster: Cluster, namespace: str, obj: dict) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj))


def get(cluster: Cluster, namespace: str, kind: str, name: str) -> dict | None:
    return cluster.get_json(kind, name, namespace)


def wait_ready(cluster: Cluster, namespace: str, name: str, timeout: int = 120) -> dict:
    cluster.kubectl("wait", "--for=condition=Ready", f"llms/{name}", "-n", namespace, f"--timeout={timeout}s")
    obj = get(cluster, namespace, "llms", name)
    assert obj is not None
    return obj


def engine_pods(cluster: Cluster, namespace: str, name: str) -> list[dict]:
    out = cluster.kubectl(
        "get", "pods", "-n", namespace, "-o", "json",
        "-l", f"app.kubernetes.io/instance={name},app.kubernetes.io/component=engine",
    ).stdout
    return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]


def node_labels(cluster: Cluster, node: str) -> dict:
    return json.loads(cluster.kubectl("get", "node", node, "-o", "json").stdout)["metadata"]["labels"]


def replicasets(cluster: Cluster, namespace: str, name: str) -> list[dict]:
    out = cluster.kubectl(
        "get", "rs", "-n", namespace, "-o", "json",
        "-l", f"app.kubernetes.io/instance={name},app.kubernetes.io/component=engine",
    ).stdout
    return json.loads(out)["items"]


def referenced_secrets(spec: dict) -> set[tuple[str, str]]:
    found = set()
    for value in spec.values():
        if isinstance(value, dict):
            if set(value) == {"name", "key"}:
                found.add((value["name"], value["key"]))
            found |= referenced_secrets(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    found |= referenced_secrets({"item": item})
    return found


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_example_reaches_ready_on_the_right_node(
    operator: OperatorProcess, cluster: Cluster, namespace: str, example: Path
) -> None:
    [doc] = [d for d in yaml.safe_load_all(example.read_text()) if d and d.get("kind") == "LLMService"]
    doc["metadata"].pop("namespace", None)
    name = doc["metadata"]["name"]
    # The examples tell users to create the Secrets they reference first; so does the test.
    for secret, key in referenced_secrets(doc["spec"]):
        cluster.kubectl("create", "secret", "generic", secret, f"--from-literal={key}=dummy", "-n", namespace)
    apply(cluster, namespace, doc)
    obj = wait_ready(cluster, namespace, name)

    status = obj["status"]
    assert status["phase"] == "Ready"
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert status["readyReplicas"] == status["replicas"] >= 1
    assert status["selector"] and status["endpoint"].startswith("http://")
    for type_ in ("Ready", "Reconciling", "Stalled", "ModelFits"):
        assert condition(obj, type_).get("reason"), f"condition {type_} lacks a reason: {status['conditions']}"
        assert condition(obj, type_).get("message")

    gpus = doc["spec"].get("resources", {}).get("gpus", 1)
    product = doc["spec"].get("resources", {}).get("gpuProduct")
    for pod in engine_pods(cluster, namespace, name):
        labels = node_labels(cluster, pod["spec"]["nodeName"])
        if gpus == 0:
            assert GPU_PRODUCT not in labels, f"CPU example landed on GPU node {pod['spec']['nodeName']}"
        else:
            assert labels.get(GPU_PRODUCT) == product


def test_spec_change_rolls_out_and_reapply_does_not(operator: OperatorProcess, cluster: Cluster, namespace: str):
    spec = llmservice("rollout")
    apply(cluster, namespace, spec)
    wait_ready(cluster, namespace, "rollout")
    [pod] = engine_pods(cluster, namespace, "rollout")
    assert len(replicasets(cluster, namespace, "rollout")) == 1

    apply(cluster, namespace, spec)  # the same spec again: nothing may restart
    apply(cluster, namespace, {**spec, "metadata": {**spec["metadata"], "labels": {"team": "ml"}}})
    time.sleep(12)  # two resyncs (5 s in the tests): a no-op reconcile has had its chance to restart Pods
    assert len(replicasets(cluster, namespace, "rollout")) == 1
    assert [p["metadata"]["uid"] for p in engine_pods(cluster, namespace, "rollout")] == [pod["metadata"]["uid"]]

    spec["spec"]["serving"]["maxModelLen"] = 16384
    apply(cluster, namespace, spec)
    cluster.wait_for("a second ReplicaSet", lambda: len(replicasets(cluster, namespace, "rollout")) == 2)
    deployment = get(cluster, namespace, "deployment", "rollout")
    assert deployment is not None
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--max-model-len") + 1] == "16384"
    obj = wait_ready(cluster, namespace, "rollout")
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]


@pytest.mark.parametrize(("kind", "name"), [
    ("deployment", "restore"), ("service", "restore"), ("configmap", "restore-router"),
    ("horizontalpodautoscaler", "restore-router"),
])
def test_child_deleted_by_hand_comes_back(
    operator: OperatorProcess, cluster: Cluster, namespace: str, kind: str, name: str
) -> None:
    apply(cluster, namespace, llmservice("restore"))
    wait_ready(cluster, namespace, "restore")
    before = get(cluster, namespace, kind, name)
    assert before is not None
    cluster.kubectl("delete", kind, name, "-n", namespace)
    def recreated() -> dict | None:
        obj = get(cluster, namespace, kind, name)
        return obj if obj and obj["metadata"]["uid"] != before["metadata"]["uid"] else None

    # Well within the 5-minute full re-apply: the deletion event itself triggers the repair.
    restored = cluster.wait_for(f"the {kind} to be recreated", recreated, timeout=20)
    assert restored["metadata"]["ownerReferences"][0]["kind"] == "LLMService"


def test_child_edited_by_hand_is_restored(operator: OperatorProcess, cluster: Cluster, namespace: str):
    apply(cluster, namespace, llmservice("drift"))
    wait_ready(cluster, namespace, "drift")
    cluster.kubectl("patch", "service", "drift", "-n", namespace, "--type=json",
                    "-p", '[{"op":"replace","path":"/spec/ports/0/port","value":9999}]')
    cluster.wait_for(
        "the Service port to be restored",
        lambda: get(cluster, namespace, "service", "drift")["spec"]["ports"][0]["port"] == 8000,
        timeout=20,
    )


def test_deleting_the_llmservice_removes_its_children(operator: OperatorProcess, cluster: Cluster, namespace: str):
    apply(cluster, namespace, llmservice("gone", storage={"size": "50Gi"}))
    wait_ready(cluster, namespace, "gone")
    assert get(cluster, namespace, "pvc", "gone-model-cache") is not None
    cluster.kubectl("delete", "llms", "gone", "-n", namespace, "--timeout=60s")
    for kind, name in (("deployment", "gone"), ("service", "gone"), ("pvc", "gone-model-cache")):
        cluster.wait_for(f"{kind}/{name} to be garbage collected",
                         lambda k=kind, n=name: get(cluster, namespace, k, n) is None, timeout=60)


def test_too_many_gpus_reports_why_it_is_not_ready(operator: OperatorProcess, cluster: Cluster, namespace: str):
    spec = llmservice("greedy", resources={"gpus": 16})
    spec["spec"]["model"] = {"name": "meta-llama/Llama-3.1-405B-Instruct-FP8"}
    apply(cluster, namespace, spec)

    def pending_with_reason():
        obj = get(cluster, namespace, "llms", "greedy")
        ready = condition(obj, "Ready")
        return obj if "Insufficient nvidia.com/gpu" in ready.get("message", "") else None

    obj = cluster.wait_for("Ready=False quoting the scheduler", pending_with_reason, timeout=60)
    assert obj["status"]["phase"] == "Pending"
    assert condition(obj, "Ready")["status"] == "False"
    assert condition(obj, "Ready")["reason"] == "Unschedulable"


def test_model_that_cannot_fit_is_not_deployed(operator: OperatorProcess, cluster: Cluster, namespace: str):
    spec = llmservice("huge", resources={"gpus": 1, "gpuProduct": "NVIDIA-GeForce-RTX-4090"})
    spec["spec"]["model"] = {"name": "meta-llama/Llama-3.1-70B-Instruct", "parameters": "70B"}
    apply(cluster, namespace, spec)

    obj = cluster.wait_for(
        "ModelFits=False",
        lambda: (o := get(cluster, namespace, "llms", "huge")) and condition(o, "ModelFits").get("status") == "False"
        and o,
        timeout=30,
    )
    fits = condition(obj, "ModelFits")
    assert "GiB" in fits["message"] and "would fit with" in fits["message"]
    assert condition(obj, "Stalled")["status"] == "True"
    assert obj["status"]["phase"] == "Failed"
    assert get(cluster, namespace, "deployment", "huge") is None


def test_bad_spec_gets_warning_event_and_stalled(operator: OperatorProcess, cluster: Cluster, namespace: str):
    # Passes the CRD's schema and CEL, but the operator knows vLLM sets --port itself.
    apply(cluster, namespace, llmservice("badargs", serving={"extraArgs": ["--port=9000"]}))
    obj = cluster.wait_for(
        "Stalled=True",
        lambda: (o := get(cluster, namespace, "llms", "badargs")) and condition(o, "Stalled").get("status") == "True"
        and o,
        timeout=30,
    )
    assert "--port" in condition(obj, "Stalled")["message"]

    def warning():
        events = json.loads(cluster.kubectl(
            "get", "events", "-n", namespace, "-o", "json",
            "--field-selector", "involvedObject.name=badargs,type=Warning",
        ).stdout)["items"]
        return events

    [event, *rest] = cluster.wait_for("a Warning Event", warning, timeout=30)
    assert "--port" in event["message"]
    assert not rest, "one Warning per distinct problem, not one per resync"
    assert operator.alive()
    assert get(cluster, namespace, "deployment", "badargs") is None


def test_operator_killed_mid_reconcile_converges(operator: OperatorProcess, cluster: Cluster, namespace: str):
    apply(cluster, namespace, llmservice("survivor", replicas=2))
    wait_ready(cluster, namespace, "survivor")
    uids = sorted(p["metadata"]["uid"] for p in engine_pods(cluster, namespace, "survivor"))

    for index in range(3):
        apply(cluster, namespace, llmservice(f"burst-{index}"))
    operator.kill()  # in the middle of reconciling the burst
    operator.start()

    for index in range(3):
        wait_ready(cluster, namespace, f"burst-{index}")
    deployments = json.loads(cluster.kubectl("get", "deployments", "-n", namespace, "-o", "json").stdout)["items"]
    names = sorted(d["metadata"]["name"] for d in deployments)
    expected = ["burst-0", "burst-1", "burst-2", "survivor"]
    assert names == sorted(expected + [f"{name}-router" for name in expected])
    assert sorted(p["metadata"]["uid"] for p in engine_pods(cluster, namespace, "survivor")) == uids
    assert len(replicasets(cluster, namespace, "survivor")) == 1


def test_router_objects_become_ready_and_the_key_is_generated_once(
    operator: OperatorProcess, cluster: Cluster, namespace: str
) -> None:
    spec = llmservice("routed")
    apply(cluster, namespace, spec)
    obj = wait_ready(cluster, namespace, "routed")
    assert condition(obj, "RouterReady")["status"] == "True"
    assert obj["status"]["endpoint"] == f"http://routed-router.{namespace}.svc:4000/v1"
    router = get(cluster, namespace, "deployment", "routed-router")
    assert router is not None and router["status"].get("readyReplicas") == 1
    assert get(cluster, namespace, "service", "routed-router")["spec"]["ports"][0]["port"] == 4000
    secret = get(cluster, namespace, "secret", "routed-router-key")
    assert secret is not None
    config = get(cluster, namespace, "configmap", "routed-router")["data"]["config.yaml"]

    key = base64.b64decode(secret["data"]["key"]).decode()
    assert key not in config and "os.environ/LITELLM_MASTER_KEY" in config

    spec["spec"]["router"] = {"numRetries": 5}  # a router change rolls the router, never the key
    apply(cluster, namespace, spec)
    cluster.wait_for(
        "the new config",
        lambda: "num_retries: 5" in get(cluster, namespace, "configmap", "routed-router")["data"]["config.yaml"],
        timeout=30,
    )
    assert get(cluster, namespace, "secret", "routed-router-key")["data"] == secret["data"]


def test_missing_fallback_is_reported_then_picked_up(operator: OperatorProcess, cluster: Cluster, namespace: str):
    spec = llmservice("primary")
    spec["spec"]["router"] = {"fallbacks": [{"llmService": "backup"}]}
    apply(cluster, namespace, spec)

    def router_condition(status: str):
        obj = get(cluster, namespace, "llms", "primary")
        return obj if condition(obj, "RouterReady").get("status") == status else None

    obj = cluster.wait_for("RouterReady=False", lambda: router_condition("False"), timeout=60)
    assert "LLMService backup" in condition(obj, "RouterReady")["message"]
    assert "backup" not in get(cluster, namespace, "configmap", "primary-router")["data"]["config.yaml"]
    # The router keeps serving the local model meanwhile: its Deployment is up.
    cluster.wait_for("the router Deployment", lambda: (get(cluster, namespace, "deployment", "primary-router")
                                                       or {}).get("status", {}).get("readyReplicas") == 1)

    apply(cluster, namespace, llmservice("backup"))
    cluster.wait_for("RouterReady=True", lambda: router_condition("True"), timeout=60)
    config = get(cluster, namespace, "configmap", "primary-router")["data"]["config.yaml"]
    assert f"http://backup.{namespace}.svc:8000/v1" in config


def test_deletion_does_not_wait_for_the_operator(operator: OperatorProcess, cluster: Cluster, namespace: str):
    apply(cluster, namespace, llmservice("orphan-safe"))
    obj = wait_ready(cluster, namespace, "orphan-safe")
    assert not obj["metadata"].get("finalizers"), "a finalizer would hang deletion while the operator is down"
    operator.kill()
    try:
        cluster.kubectl("delete", "llms", "orphan-safe", "-n", namespace, "--timeout=30s")
        cluster.wait_for("garbage collection of the Deployment",
                         lambda: get(cluster, namespace, "deployment", "orphan-safe") is None, timeout=60)
    finally:
        operator.start()


def test_a_deleted_namespace_is_forgotten(operator: OperatorProcess, cluster: Cluster) -> None:
    """Deleting a namespace deletes its LLMServices, but kopf stops watching the namespace, so their DELETED
    events may never arrive. The operator notices at its next resync and forgets them: no error every resync
    interval (5 s here) for objects that are gone."""
    with cluster.fresh_namespace("op") as doomed:
        apply(cluster, doomed, llmservice("doomed"))
        wait_ready(cluster, doomed, "doomed")
    cluster.wait_for("the namespace to be gone",
                     lambda: cluster.kubectl("get", "namespace", doomed, check=False).returncode != 0, timeout=120)
    settled_at = len(operator.log())
    time.sleep(4 * 5)  # four resync intervals
    errors = [line for line in operator.log()[settled_at:].splitlines()
              if "[ERROR" in line and f"{doomed}/" in line]
    assert errors == [], errors[:3]


def test_namespaces_outside_the_watch_scope_are_left_alone(
    operator: OperatorProcess, cluster: Cluster, namespace: str
) -> None:
    """`run --namespace 'op-*'` (how the session operator runs): an LLMService in another
    namespace gets no status, no finalizer and no children, while one in scope is served."""
    with cluster.fresh_namespace("t") as outside:
        apply(cluster, outside, llmservice("ignored"))
        apply(cluster, namespace, llmservice("served"))
        wait_ready(cluster, namespace, "served")
        ignored = get(cluster, outside, "llms", "ignored")
        assert ignored is not None
        assert not ignored.get("status"), ignored.get("status")
        assert not ignored["metadata"].get("finalizers")
        children = cluster.kubectl("get", "deploy,svc,cm", "-n", outside, "-o", "name").stdout.split()
        assert [c for c in children if "ignored" in c] == []
