"""`helm install` for real: the operator's own image (hack/build-images.sh operator) runs as the chart's
default two Pods on the testbed's real node with in-cluster credentials (the chart's ServiceAccount, no
kubeconfig). Both are Ready; exactly one holds the leader Lease, and each Pod's own /metrics (read through
the apiserver's Pod proxy) says which: llm_operator_leader 1 on the leader, 0 on the standby. The leader
reconciles an LLMService whose router runs for real on the same node (the LiteLLM stand-in image, set
once through the chart's defaultImages.router), and the router's HPA reads real CPU metrics from
metrics-server. The leader's process is SIGKILLed and a spec change made at once is applied by whichever
Pod holds the Lease next. Then `helm upgrade` to a new image tag rolls both Pods and the Lease moves to a new
one, which applies a spec change, and `helm uninstall` leaves the LLMService and its model-cache PVC alone.

The engine in this test sits on a fake kwok GPU node (it needs 1 H100); what runs for real is the
operator and the router. tests/e2e/test_serving_real_node.py runs an engine for real."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from support.cluster import Cluster, condition
from support.helm import CHART, helm, lease_holder, metric, pod_metrics
from support.real_node import REAL_NODE_SELECTOR, REAL_NODE_TOLERATION, local_image, sigkill_container, tag

GROUP = "serving.llm-operator.io"


def pods(cluster: Cluster, namespace: str, selector: str) -> list[dict]:
    return json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout)["items"]


def ready_pods(cluster: Cluster, namespace: str, selector: str) -> list[dict]:
    return [p for p in pods(cluster, namespace, selector)
            if condition(p, "Ready").get("status") == "True" and not p["metadata"].get("deletionTimestamp")]


def leader_and_standby(cluster: Cluster, namespace: str, lease: str, operator_pods: list[dict]) -> tuple[str, str]:
    """The two operator Pods' names, leader first: the Lease's holder, which reports llm_operator_leader 1,
    while the other reports 0 (the leader's gauge turns 1 just after it takes the Lease: waited for)."""
    names = sorted(p["metadata"]["name"] for p in operator_pods)
    assert len(names) == 2, names
    holder = cluster.wait_for(f"the Lease {lease} held by one of {names}", lambda: (
        lease_holder(cluster, namespace, lease) in names and lease_holder(cluster, namespace, lease)), timeout=60)
    [standby] = [name for name in names if name != holder]
    cluster.wait_for(f"llm_operator_leader 1 on {holder}", lambda: metric(
        pod_metrics(cluster, namespace, holder), "llm_operator_leader") == 1, timeout=30)
    assert metric(pod_metrics(cluster, namespace, standby), "llm_operator_leader") == 0
    assert lease_holder(cluster, namespace, lease) == holder  # still: no flapping meanwhile
    return holder, standby


@pytest.fixture
def real_release(crd_installed: Cluster, real_node: str, namespace: str) -> Iterator[str]:
    name = f"{namespace}-real"
    yield name
    helm(crd_installed, "uninstall", name, "-n", namespace, "--wait", "--timeout", "60s", check=False)


@pytest.fixture
def served_namespace(cluster: Cluster) -> Iterator[str]:
    with cluster.fresh_namespace("served") as name:
        yield name


def llmservice_on_kwok_with_a_real_router(name: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/v1alpha1", "kind": "LLMService", "metadata": {"name": name},
        "spec": {
            "engine": "vllm",
            "model": {"name": "meta-llama/Llama-3.1-8B-Instruct", "parameters": "8B"},
            "resources": {"gpus": 1, "gpuProduct": "NVIDIA-H100-80GB-HBM3"},
            "serving": {"maxModelLen": 8192},
            "storage": {"size": "10Gi"},
            "router": {"nodeSelector": REAL_NODE_SELECTOR, "tolerations": [REAL_NODE_TOLERATION]},
        },
    }


def test_helm_install_runs_the_operator_image_on_the_real_node(
    crd_installed: Cluster, namespace: str, served_namespace: str, real_release: str, tmp_path: Path
):
    cluster = crd_installed
    operator_image = local_image("operator")
    router_image = local_image("litellm")
    repository, image_tag = operator_image.rsplit(":", 1)
    values = {
        "image": {"repository": repository, "tag": image_tag, "pullPolicy": "IfNotPresent"},
        "nodeSelector": REAL_NODE_SELECTOR, "tolerations": [REAL_NODE_TOLERATION],
        "watchNamespaces": [served_namespace],
        "defaultImages": {"router": router_image},
        "workloadImagePullSecrets": ["mirror-pull"],
        "extraArgs": ["--resync-interval=5"],
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    # The pull Secret the operator adds to every Pod (the images are local, so it is never used).
    cluster.kubectl("create", "secret", "docker-registry", "mirror-pull", "-n", served_namespace,
                    "--docker-server=mirror.invalid", "--docker-username=u", "--docker-password=p")
    helm(cluster, "install", real_release, str(CHART), "-n", namespace, "-f", str(values_file),
         "--wait", "--timeout", "180s", timeout=240)
    fullname = f"{real_release}-llm-operator"
    selector = f"app.kubernetes.io/instance={real_release}"

    # 1. The operator Pods (the chart's default 2): Running and Ready on the real node (the podAntiAffinity
    # is only preferred), in-cluster credentials only; the standby is Ready too.
    operator_pods = ready_pods(cluster, namespace, selector)
    assert len(operator_pods) == 2, [p["metadata"]["name"] for p in operator_pods]
    for pod in operator_pods:
        assert pod["spec"]["nodeName"] == "real-0"
        [container] = pod["spec"]["containers"]
        assert container["image"] == operator_image
        assert "KUBECONFIG" not in {e["name"] for e in container.get("env", [])}
        assert not any("--kubeconfig" in arg for arg in container["args"])
        assert "--leader-elect" in container["args"]
        assert pod["spec"]["serviceAccountName"] == fullname
        [status] = pod["status"]["containerStatuses"]
        assert status["ready"] and status["restartCount"] == 0
    # Exactly one holds the Lease (named after the release), and each Pod's metrics agree.
    leader, standby = leader_and_standby(cluster, namespace, fullname, operator_pods)
    exec_version = cluster.kubectl("exec", "-n", namespace, leader, "--", "llm-operator", "version")
    assert exec_version.stdout.strip() == "0.1.0"

    # 2. It reconciles: children, status, and a router that runs the operator-wide image for real.
    body = llmservice_on_kwok_with_a_real_router("chat")
    cluster.kubectl("apply", "-n", served_namespace, "-f", "-", input=yaml.safe_dump(body))
    cluster.kubectl("wait", "--for=condition=Ready", "llms/chat", "-n", served_namespace, "--timeout=240s",
                    timeout=260)
    service = cluster.get_json("llms", "chat", served_namespace)
    assert service["status"]["phase"] == "Ready"
    assert service["status"]["endpoint"] == f"http://chat-router.{served_namespace}.svc:4000/v1"
    [router_pod] = ready_pods(cluster, served_namespace, "app.kubernetes.io/instance=chat,"
                              "app.kubernetes.io/component=router")
    assert router_pod["spec"]["nodeName"] == "real-0"
    assert router_pod["spec"]["containers"][0]["image"] == router_image
    assert router_pod["spec"]["imagePullSecrets"] == [{"name": "mirror-pull"}]
    engine = cluster.get_json("deployment", "chat", served_namespace)
    assert engine["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "mirror-pull"}]
    operator_log = cluster.kubectl("logs", "-n", namespace, leader).stdout
    assert f"reconciled {served_namespace}/chat" in operator_log, operator_log
    # Only the leader works: its reconciles count, the standby's stay 0 (it still waits for the Lease).
    assert (metric(pod_metrics(cluster, namespace, leader), "llm_operator_reconciles_total") or 0) > 0
    standby_metrics = pod_metrics(cluster, namespace, standby)
    assert metric(standby_metrics, "llm_operator_reconciles_total") == 0, standby_metrics
    assert metric(standby_metrics, "llm_operator_leader") == 0
    standby_log = cluster.kubectl("logs", "-n", namespace, standby).stdout
    assert "reconciled " not in standby_log, standby_log

    # 3. The router's HPA reads the router Pod's real CPU use through metrics-server.
    def cpu_utilization() -> int | None:
        hpa = cluster.get_json("hpa", "chat-router", served_namespace) or {}
        for reading in hpa.get("status", {}).get("currentMetrics") or []:
            current = (reading.get("resource") or {}).get("current") or {}
            if reading.get("type") == "Resource" and "averageUtilization" in current:
                return current["averageUtilization"] + 1  # 0 % is a reading too
        return None

    cluster.wait_for("the router HPA's CPU reading", cpu_utilization, timeout=180, interval=3)
    hpa = cluster.get_json("hpa", "chat-router", served_namespace)
    assert condition(hpa, "ScalingActive").get("status") == "True", hpa["status"]

    # 4. The leader's process SIGKILLed, and a spec change made at once: the Lease passes (to the standby once
    # the Lease expires, or back to the same Pod if the kubelet restarts its container first: the Lease names
    # the Pod, and its old process is gone), the change is applied, and one Pod is leader.
    [leader_pod] = [p for p in operator_pods if p["metadata"]["name"] == leader]
    killed_at = time.monotonic()
    sigkill_container(leader_pod)
    cluster.kubectl("patch", "llms", "chat", "-n", served_namespace, "--type=merge",
                    "-p", json.dumps({"spec": {"serving": {"maxModelLen": 3072}}}))
    cluster.wait_for("the change made during the failover applied", lambda: "3072" in json.dumps(
        cluster.get_json("deployment", "chat", served_namespace)["spec"]["template"]["spec"]["containers"][0]["args"]
    ), timeout=120, interval=0.5)
    applied_after = time.monotonic() - killed_at
    restarted = cluster.wait_for("the killed container restarted and Ready", lambda: next((
        p for p in ready_pods(cluster, namespace, selector)
        if p["metadata"]["name"] == leader and p["status"]["containerStatuses"][0]["restartCount"] == 1), None),
        timeout=120)
    assert restarted["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 137  # SIGKILL
    after, other = leader_and_standby(cluster, namespace, fullname, ready_pods(cluster, namespace, selector))
    print(f"failover in the chart's Pods: leader {leader} SIGKILLed, the change applied {applied_after:.1f} s "
          f"later by {after} ({'the standby' if after == standby else 'the same Pod, restarted'})")

    # 5. helm upgrade to a new image tag rolls the operator (RollingUpdate: a new Pod starts as a standby;
    # the Lease passes to a new Pod once the old leader stops and its Lease expires).
    upgraded = tag(operator_image, f"{repository}:upgrade-{int(time.time())}")
    helm(cluster, "upgrade", real_release, str(CHART), "-n", namespace, "-f", str(values_file),
         "--set", f"image.tag={upgraded.rsplit(':', 1)[1]}", "--wait", "--timeout", "180s", timeout=240)
    old_names = {after, other}

    def rolled() -> list[dict]:
        current = pods(cluster, namespace, selector)
        ready = [p for p in ready_pods(cluster, namespace, selector)
                 if p["spec"]["containers"][0]["image"] == upgraded]
        return ready if len(current) == len(ready) == 2 else []

    new_pods = cluster.wait_for("two upgraded operator Pods and no old one", rolled, timeout=120)
    assert not old_names & {p["metadata"]["name"] for p in new_pods}
    new_leader, _ = leader_and_standby(cluster, namespace, fullname, new_pods)
    # The new leader applies a spec change.
    cluster.kubectl("patch", "llms", "chat", "-n", served_namespace, "--type=merge",
                    "-p", json.dumps({"spec": {"serving": {"maxModelLen": 4096}}}))
    cluster.wait_for("the new operator to apply --max-model-len 4096", lambda: "4096" in json.dumps(
        cluster.get_json("deployment", "chat", served_namespace)["spec"]["template"]["spec"]["containers"][0]["args"]
    ), timeout=60)
    assert f"reconciled {served_namespace}/chat" in cluster.kubectl("logs", "-n", namespace, new_leader).stdout

    # 6. helm uninstall removes the operator, never what users own.
    helm(cluster, "uninstall", real_release, "-n", namespace, "--wait", "--timeout", "60s")
    cluster.wait_for("the operator Pod to go", lambda: not pods(cluster, namespace, selector), timeout=60)
    assert cluster.get_json("llms", "chat", served_namespace) is not None
    pvc = cluster.get_json("pvc", "chat-model-cache", served_namespace)
    assert pvc is not None and not pvc["metadata"].get("deletionTimestamp")
    assert cluster.get_json("deployment", "chat", served_namespace) is not None
