"""The testbed's real node (hack/testbed/node.sh): a kubelet that runs containers through containerd
and runc on the testbed's own CNI bridge, with kube-proxy, CoreDNS and metrics-server.

These tests check what Pods there rely on: cluster DNS, the kubernetes Service with in-cluster
credentials, `kubectl logs`/`exec`, resource metrics, and that nothing a Pod sends can leave the
machine (checked on the host's configuration; no test sends traffic off the machine)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from support.cluster import Cluster
from support.real_node import (
    KUBERNETES_SERVICE_IP,
    NODE_IP,
    POD_CIDR,
    local_image,
    on_real_node,
)

# Runs in a Pod: what a workload sees of the cluster (DNS, the apiserver through its ClusterIP with
# the ServiceAccount's token), printed as one JSON line for `kubectl logs`.
PROBE_SCRIPT = r"""
import json, socket, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
out = {"resolv": open("/etc/resolv.conf").read()}
out["kubernetes"] = socket.gethostbyname("kubernetes.default.svc.cluster.local")
out["short"] = socket.gethostbyname("kubernetes.default")
try:
    socket.gethostbyname("pypi.org")
    out["outside"] = "resolved"
except socket.gaierror as error:
    out["outside"] = "not resolved: %s" % error
context = ssl.create_default_context(cafile=sa + "/ca.crt")
request = urllib.request.Request("https://kubernetes.default.svc/version",
                                 headers={"Authorization": "Bearer " + open(sa + "/token").read()})
with urllib.request.urlopen(request, context=context, timeout=10) as response:
    out["version"] = json.load(response)["gitVersion"]
print(json.dumps(out))
"""


def restricted_container(name: str, image: str, command: list[str]) -> dict:
    return {
        "name": name, "image": image, "imagePullPolicy": "IfNotPresent", "command": command,
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "runAsUser": 65532, "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"}},
    }


def test_the_real_node_is_ready_next_to_the_fake_gpu_nodes(cluster: Cluster, real_node: str):
    # `up` ran again for this session (the cluster fixture): every node component is still running.
    status = subprocess.run(["bash", "hack/cluster.sh", "status"], capture_output=True, text=True, check=True)
    assert f"real node:  {real_node} running" in status.stdout, status.stdout
    listed = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    nodes = {n["metadata"]["name"]: n for n in listed}
    node = nodes[real_node]
    assert node["metadata"]["labels"]["llm-operator.io/node"] == "real"
    assert {"key": "llm-operator.io/real-node", "value": "true", "effect": "NoSchedule"} in node["spec"]["taints"]
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.36.3"
    assert {"type": "InternalIP", "address": NODE_IP} in node["status"]["addresses"]
    # kwok keeps to its own Nodes: the real one carries none of its annotations.
    assert "kwok.x-k8s.io/node" not in node["metadata"].get("annotations", {})
    assert {"gpu-h100-0", "gpu-h100-1", "gpu-rtx4090-0", "cpu-0"} <= set(nodes)


def test_a_pod_resolves_services_and_reaches_the_apiserver_in_cluster(
    cluster: Cluster, real_node: str, namespace: str
):
    image = local_image("operator")
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": namespace},
        "spec": on_real_node({
            "restartPolicy": "Never",
            "containers": [restricted_container("probe", image, ["python3", "-c", PROBE_SCRIPT])],
        }),
    }
    # The default ServiceAccount may read /version (system:public-info-viewer).
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
    cluster.wait_for("the probe Pod to finish", lambda: (cluster.get_json("pod", "probe", namespace) or {})
                     .get("status", {}).get("phase") in ("Succeeded", "Failed"), timeout=120)
    finished = cluster.get_json("pod", "probe", namespace)
    logs = cluster.kubectl("logs", "probe", "-n", namespace).stdout
    assert finished["status"]["phase"] == "Succeeded", logs
    assert finished["spec"]["nodeName"] == real_node
    assert finished["status"]["podIP"].startswith(POD_CIDR.rsplit(".", 1)[0] + ".")
    seen = json.loads(logs.strip().splitlines()[-1])
    assert seen["kubernetes"] == KUBERNETES_SERVICE_IP == seen["short"]
    assert seen["version"] == "v1.36.3"
    # The cluster DNS is the only resolver, and it answers nothing outside the cluster domain.
    nameservers = [line.split()[1] for line in seen["resolv"].splitlines() if line.startswith("nameserver")]
    assert nameservers == [NODE_IP]
    assert seen["outside"].startswith("not resolved")


def test_logs_exec_and_resource_metrics_of_a_running_pod(cluster: Cluster, real_node: str, namespace: str):
    image = local_image("operator")
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "busy", "namespace": namespace},
        "spec": on_real_node({
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                **restricted_container("busy", image, [
                    "python3", "-c", "import time\nprint('started', flush=True)\nwhile True: sum(range(10**5))"]),
                "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
            }],
        }),
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
    cluster.kubectl("wait", "--for=condition=Ready", "pod/busy", "-n", namespace, "--timeout=120s")
    assert "started" in cluster.kubectl("logs", "busy", "-n", namespace).stdout
    version = cluster.kubectl("exec", "busy", "-n", namespace, "--", "llm-operator", "version").stdout
    assert version.strip() == "0.1.0"

    def cpu_used() -> int | None:
        result = cluster.kubectl("get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/busy",
                                 check=False)
        if result.returncode != 0:
            return None
        usage = json.loads(result.stdout)["containers"][0]["usage"]["cpu"]
        return int(usage.rstrip("n")) if usage.endswith("n") else None

    used = cluster.wait_for("resource metrics of the busy Pod", cpu_used, timeout=120, interval=3)
    assert used > 10_000_000, f"a busy loop uses more than 10m of CPU, metrics-server says {used}n"
    node = json.loads(cluster.kubectl("get", "--raw", f"/apis/metrics.k8s.io/v1beta1/nodes/{real_node}").stdout)
    assert node["usage"]["memory"]


def _run(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=30).stdout


def test_nothing_a_pod_sends_can_leave_the_machine(real_node: str):
    """Read off the host's configuration, so that no test has to send anything off the machine."""
    rules = _run("iptables", "-S", "LLMOP-FORWARD").splitlines()
    assert rules[1:] == [
        "-A LLMOP-FORWARD -i llmop0 ! -o llmop0 -p tcp -j REJECT --reject-with tcp-reset",
        "-A LLMOP-FORWARD -i llmop0 ! -o llmop0 -j REJECT --reject-with icmp-port-unreachable",
        "-A LLMOP-FORWARD ! -i llmop0 -o llmop0 -j DROP",
    ]
    assert _run("iptables", "-S", "FORWARD").splitlines()[1] == "-A FORWARD -j LLMOP-FORWARD"
    # No forwarding on the host's own interfaces, and no masquerade of the Pod network.
    for device in Path("/sys/class/net").iterdir():
        if device.name in ("lo", "llmop0") or device.name.startswith("veth"):
            continue
        forwarding = Path(f"/proc/sys/net/ipv4/conf/{device.name}/forwarding").read_text().strip()
        assert forwarding == "0", f"{device.name} forwards packets"
    nat = _run("iptables", "-t", "nat", "-S", "POSTROUTING")
    assert POD_CIDR not in nat, nat
    # kwok's fake Pod IPs can be a Service's endpoints: the host routes them nowhere.
    assert "unreachable 10.245.0.0/16" in _run("ip", "route", "show", "type", "unreachable")
    # A ClusterIP that kube-proxy has not (yet) translated stays on the bridge instead of the default route.
    assert "dev llmop0" in _run("ip", "route", "get", KUBERNETES_SERVICE_IP.rsplit(".", 1)[0] + ".250")
    conflist = json.loads(next(Path(p) for p in _cni_configs()).read_text())
    assert conflist["plugins"][0]["ipMasq"] is False


def _cni_configs() -> list[str]:
    out = _run("bash", "-c", ". hack/lib.sh && echo $CLUSTER_DIR/node/cni/*.conflist")
    return out.split()


@pytest.fixture(autouse=True)
def _run_from_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
