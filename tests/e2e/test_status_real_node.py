"""What only real Pods show, reported in the LLMService's status (on the testbed's real node, through
the session operator): a referenced Secret that does not exist (the kubelet's
CreateContainerConfigError), an image that cannot be pulled (ImagePullBackOff) and a container that
keeps failing (CrashLoopBackOff, with its exit code and last log line). On kwok all three read Ready.

The engine image here is deliberately wrong: the operator's own image, which has no `vllm`, stands in
for an engine image that does not start; the pull failure goes to a registry on loopback that is not
there."""

from __future__ import annotations

import json

import yaml

from support.cluster import Cluster, OperatorProcess, condition
from support.real_node import REAL_NODE_SELECTOR, REAL_NODE_TOLERATION, local_image

GROUP = "serving.llm-operator.io"


def cpu_llmservice(name: str, image: str, **spec: object) -> dict:
    body = {
        "engine": "vllm", "image": image,
        "model": {"name": "Qwen/Qwen2.5-0.5B-Instruct"},
        "resources": {"gpus": 0, "cpu": "100m", "memory": "256Mi",
                      "nodeSelector": REAL_NODE_SELECTOR, "tolerations": [REAL_NODE_TOLERATION]},
        "router": {"enabled": False},
        **spec,
    }
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "LLMService", "metadata": {"name": name}, "spec": body}


def status_text(cluster: Cluster, name: str, namespace: str) -> str:
    return json.dumps((cluster.get_json("llms", name, namespace) or {}).get("status", {}))


def test_real_pod_failures_are_reported_in_status(
    operator: OperatorProcess, real_node: str, namespace: str
):
    cluster = operator.cluster
    wrong_image = local_image("operator")
    services = [
        cpu_llmservice("no-secret", wrong_image, model={"name": "Qwen/Qwen2.5-0.5B-Instruct",
                                                        "tokenSecretRef": {"name": "hf-token", "key": "token"}}),
        cpu_llmservice("no-image", "localhost:5999/missing/engine:1"),
        cpu_llmservice("crashing", wrong_image),
    ]
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(services))

    # 1. The missing Secret: named by the operator at once, and the kubelet's own reason too.
    cluster.wait_for("SecretsFound=False naming hf-token", lambda: "hf-token" in condition(
        cluster.get_json("llms", "no-secret", namespace), "SecretsFound").get("message", ""), timeout=60)
    found = condition(cluster.get_json("llms", "no-secret", namespace), "SecretsFound")
    assert found["status"] == "False" and found["reason"] == "SecretNotFound"
    assert "spec.model.tokenSecretRef" in found["message"] and namespace in found["message"]
    ready = condition(cluster.get_json("llms", "no-secret", namespace), "Ready")
    assert ready["status"] == "False" and ready["reason"] == "SecretNotFound"
    cluster.wait_for("CreateContainerConfigError in status", lambda: "CreateContainerConfigError" in status_text(
        cluster, "no-secret", namespace), timeout=120)

    # 2. The image that cannot be pulled.
    cluster.wait_for("ImagePullBackOff or ErrImagePull in status", lambda: any(
        reason in status_text(cluster, "no-image", namespace) for reason in ("ImagePullBackOff", "ErrImagePull")
    ), timeout=120)
    assert cluster.get_json("llms", "no-image", namespace)["status"]["phase"] != "Ready"

    # 3. The container that cannot start: CrashLoopBackOff, its exit code and the runtime's last words.
    text = cluster.wait_for("CrashLoopBackOff with the last log line in status", lambda: (
        t if "CrashLoopBackOff" in (t := status_text(cluster, "crashing", namespace)) and "last log line" in t
        else None), timeout=180, interval=2)
    assert "exit code" in text and "vllm" in text, text
    assert cluster.get_json("llms", "crashing", namespace)["status"]["phase"] != "Ready"

    # Creating the Secret clears the condition (the resync re-checks references).
    cluster.kubectl("create", "secret", "generic", "hf-token", "-n", namespace, "--from-literal=token=x")
    cluster.wait_for("SecretsFound=True", lambda: condition(
        cluster.get_json("llms", "no-secret", namespace), "SecretsFound").get("status") == "True", timeout=60)
    assert condition(cluster.get_json("llms", "no-secret", namespace), "Ready").get("reason") != "SecretNotFound"
