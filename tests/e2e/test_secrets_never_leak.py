"""No Secret value leaves its Secret: the operator reads a model's Hub token (to count its parameters) and
generates the router's master key, and references every Secret from the Pods it creates, but no value, raw or
base64, reaches a ConfigMap, a container's args, command or env value, an Event, the LLMService's status or
annotations, any other object of the namespace, or the operator's log.

The values are random per run, so finding one anywhere is a leak; a self-check first shows that the sweep
finds a value planted in a ConfigMap on purpose.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterable
from typing import Any

import pytest
import yaml

from support.cluster import Cluster, OperatorProcess, condition
from support.hub_standin import HubStandIn

NAME = "leaky"
GATED_REPO = "acme/gated-tiny-llama"  # the Hub stand-in serves its weights' header only with the token
H100 = "NVIDIA-H100-80GB-HBM3"


def encodings(value: str) -> set[str]:
    """`value` as it could appear: raw, base64 (standard and URL-safe), and the middle of a base64 text
    that holds it at any byte offset (a value inside a larger encoded blob)."""
    raw = value.encode()
    found = {value, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw).decode()
        found.add(encoded[4:-4])  # the groups that hold the padding bytes or the end are left out
        found.add(encoded[4:-4].replace("+", "-").replace("/", "_"))
    return {text for text in found if len(text) >= 16}


def leaks(texts: dict[str, str], values: dict[str, str]) -> list[str]:
    """"<what> in <where>" for every value (by name) found in any text (by location)."""
    return [f"{what} in {where}" for where, text in texts.items() for what, value in values.items()
            if any(needle in text for needle in encodings(value))]


def kubectl_json(cluster: Cluster, *args: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def containers(pod_spec: dict[str, Any]) -> Iterable[dict[str, Any]]:
    yield from pod_spec.get("initContainers") or []
    yield from pod_spec.get("containers") or []


def targeted_texts(cluster: Cluster, namespace: str) -> dict[str, str]:
    """The places a careless operator would put a value: ConfigMap data, containers' args, command and env
    values (a valueFrom reference is fine), Event messages, the LLMService's status and annotations."""
    texts: dict[str, str] = {}
    for item in kubectl_json(cluster, "configmaps", "-n", namespace)["items"]:
        texts[f"configmap/{item['metadata']['name']}"] = json.dumps(
            {**(item.get("data") or {}), **(item.get("binaryData") or {})})
    for kind in ("deployments", "replicasets", "pods"):
        for item in kubectl_json(cluster, kind, "-n", namespace)["items"]:
            spec = item["spec"]["template"]["spec"] if "template" in item["spec"] else item["spec"]
            for container in containers(spec):
                where = f"{kind}/{item['metadata']['name']}/{container['name']}"
                texts[f"{where} args"] = json.dumps(container.get("args") or [])
                texts[f"{where} command"] = json.dumps(container.get("command") or [])
                texts[f"{where} env values"] = json.dumps(
                    [env.get("value") for env in container.get("env") or [] if "value" in env])
    for item in kubectl_json(cluster, "events", "-n", namespace)["items"]:
        texts[f"event/{item['metadata']['name']} ({item.get('reason')})"] = item.get("message") or ""
    for item in kubectl_json(cluster, "llmservices", "-n", namespace)["items"]:
        texts[f"llmservice/{item['metadata']['name']} status"] = json.dumps(item.get("status") or {})
        texts[f"llmservice/{item['metadata']['name']} annotations"] = json.dumps(
            item["metadata"].get("annotations") or {})
    return texts


def every_object(cluster: Cluster, namespace: str) -> dict[str, str]:
    """Every object of every namespaced kind that can be listed, Secrets aside, as JSON (managed fields too)."""
    kinds = cluster.kubectl("api-resources", "--namespaced=true", "--verbs=list", "-o", "name").stdout.split()
    kinds = [kind for kind in kinds if kind.split(".")[0] != "secrets"]
    listed = kubectl_json(cluster, ",".join(kinds), "-n", namespace, "--show-managed-fields")
    return {f"{item['kind']}/{item['metadata']['name']}": json.dumps(item, ensure_ascii=False)
            for item in listed["items"]}


def sweep(cluster: Cluster, namespace: str, operator: OperatorProcess, values: dict[str, str]) -> list[str]:
    targeted, objects = targeted_texts(cluster, namespace), every_object(cluster, namespace)
    # What was searched: the engine's and the router's Pods, the router's config, the operator's Events.
    for where in (f"pods/{NAME}-", f"pods/{NAME}-router-", f"configmap/{NAME}-router", "event/", "llmservice/"):
        assert any(location.startswith(where) for location in targeted), (where, sorted(targeted))
    assert {"Deployment", "ReplicaSet", "Pod", "Service", "ConfigMap", "HorizontalPodAutoscaler", "Event",
            "LLMService"} <= {location.split("/")[0] for location in objects}, sorted(objects)
    return (leaks(targeted, values) + leaks(objects, values)
            + leaks({"the operator's log": operator.log()}, values))


def secret(name: str, key: str, value: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque",
            "data": {key: base64.b64encode(value.encode()).decode()}}


def leaky_service() -> dict[str, Any]:
    return {
        "apiVersion": "serving.llm-operator.io/v1alpha1", "kind": "LLMService", "metadata": {"name": NAME},
        "spec": {
            "engine": "vllm",
            # No spec.model.parameters: the operator reads the count from the Hub, with the model's token.
            "model": {"name": GATED_REPO, "tokenSecretRef": {"name": "hf-token", "key": "token"}},
            "resources": {"gpus": 1, "gpuProduct": H100},
            "serving": {"env": [
                {"name": "APP_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "password"}}},
                {"name": "PLAIN", "value": "not-a-secret"},
            ]},
            "router": {"enabled": True, "fallbacks": [
                {"model": "openai/gpt-4o", "apiKeySecretRef": {"name": "openai", "key": "api-key"}},
            ]},
        },
    }


def test_the_sweep_finds_a_planted_value(cluster: Cluster, namespace: str) -> None:
    """The detector itself: a value put in a ConfigMap (base64, inside a larger text) or in a log is found."""
    value = f"canary-{secrets.token_hex(16)}"
    blob = base64.b64encode(b"prefix:" + value.encode() + b":suffix").decode()
    cluster.kubectl("create", "configmap", "canary", f"--from-literal=blob={blob}", "-n", namespace)
    found = leaks(targeted_texts(cluster, namespace), {"canary": value})
    assert found == ["canary in configmap/canary"], found
    assert "canary in ConfigMap/canary" in leaks(every_object(cluster, namespace), {"canary": value})
    assert leaks({"log": f"INFO something {value} else"}, {"canary": value}) == ["canary in log"]
    assert leaks({"log": "INFO nothing here"}, {"canary": value}) == []


def test_no_secret_value_reaches_any_object_event_status_or_log(
    operator: OperatorProcess, cluster: Cluster, namespace: str, hub: HubStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {
        "the Hub token": f"hf_leak{secrets.token_hex(16)}",
        "the fallback's API key": f"sk-fallback-{secrets.token_hex(16)}",
        "the env Secret": f"env-secret-{secrets.token_hex(16)}",
    }
    # The stand-in serves the gated repo's weights only with this token, so a recorded count proves the
    # operator read the Secret and sent its value to the Hub.
    monkeypatch.setattr(hub, "token", values["the Hub token"])
    for manifest in (secret("hf-token", "token", values["the Hub token"]),
                     secret("openai", "api-key", values["the fallback's API key"]),
                     secret("app-secret", "password", values["the env Secret"])):
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(leaky_service()))

    cluster.kubectl("wait", "--for=condition=Ready", f"llms/{NAME}", "-n", namespace, "--timeout=180s")
    obj = cluster.wait_for("status.modelSize", lambda: (o := cluster.get_json("llms", NAME, namespace))
                           and (o.get("status") or {}).get("modelSize") and o, timeout=60)
    size = obj["status"]["modelSize"]
    assert size["model"] == GATED_REPO and size["parameters"] > 0, size
    assert condition(obj, "ModelFits")["status"] == "True", obj["status"]
    bearer = f"Bearer {values['the Hub token']}"
    assert any(seen.headers.get("Authorization") == bearer for seen in hub.requests), "the token was not sent"
    assert not any(seen.path.startswith("/cdn/") and "Authorization" in seen.headers for seen in hub.requests)

    key = cluster.get_json("secret", f"{NAME}-router-key", namespace)
    assert key is not None, "the router's master key was not generated"
    values["the router's master key"] = base64.b64decode(key["data"]["key"]).decode()
    assert values["the router's master key"].startswith("sk-")

    # Each value reaches its Pods by reference only.
    router = cluster.get_json("deployment", f"{NAME}-router", namespace)
    engine = cluster.get_json("deployment", NAME, namespace)
    router_env = {e["name"]: e for e in router["spec"]["template"]["spec"]["containers"][0]["env"]}
    engine_env = {e["name"]: e for e in engine["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert router_env["LITELLM_MASTER_KEY"]["valueFrom"]["secretKeyRef"]["name"] == f"{NAME}-router-key"
    assert router_env["FALLBACK_1_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "openai", "key": "api-key", "optional": True}
    assert engine_env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token"}
    assert engine_env["APP_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "app-secret", "key": "password"}
    config = cluster.get_json("configmap", f"{NAME}-router", namespace)["data"]["config.yaml"]
    assert "os.environ/LITELLM_MASTER_KEY" in config and "os.environ/FALLBACK_1_API_KEY" in config

    # The operator's log is the one that served this namespace.
    assert f"reconciled {namespace}/{NAME}" in operator.log()
    found = sweep(cluster, namespace, operator, values)
    assert found == [], found
