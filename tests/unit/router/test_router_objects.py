"""The router's ConfigMap, Secret, Deployment, Service and HPA, and its status helper."""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Mapping

import pytest
import yaml

from llm_operator.api.models import LLMService
from llm_operator.plan import desired_objects, endpoint
from llm_operator.resources.common import CONFIG_HASH_ANNOTATION, config_hash
from llm_operator.router.objects import (
    IMAGE,
    LITELLM_VERSION,
    PORT,
    build_router_configmap,
    build_router_deployment,
    build_router_hpa,
    build_router_secret,
    build_router_service,
    generate_master_key,
    render_config,
    router_endpoint,
)
from llm_operator.router.status import router_status
from unit.factories import ENGINES, UID, env_by_name, make_service

SECRET_VALUE = "sk-this-value-must-never-appear-0123456789"
FALLBACKS = {"fallbacks": [
    {"model": "openai/gpt-4o", "apiKeySecretRef": {"name": "openai", "key": "api-key"}},
    {"llmService": "other"},
]}
OTHER = {"other": make_service("tgi", name="other")}


def router_deployment(service: LLMService, fallbacks: Mapping[str, LLMService],
                      secrets: Collection[str] | None = None) -> dict:
    return build_router_deployment(service, UID, render_config(service, fallbacks, secrets))


def router_configmap(service: LLMService, fallbacks: Mapping[str, LLMService],
                     secrets: Collection[str] | None = None) -> dict:
    return build_router_configmap(service, UID, render_config(service, fallbacks, secrets))


def container(deployment: dict) -> dict:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def config_of(configmap: dict) -> dict:
    return yaml.safe_load(configmap["data"]["config.yaml"])


def pod_hash(deployment: dict) -> str:
    return deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]


# --- names, image, endpoint -----------------------------------------------------------------------


def test_names_and_endpoint() -> None:
    llm = make_service("vllm", name="chat", namespace="team-a")
    assert router_configmap(llm, {})["metadata"]["name"] == "chat-router"
    assert router_deployment(llm, {})["metadata"]["name"] == "chat-router"
    assert build_router_service(llm, UID)["metadata"]["name"] == "chat-router"
    assert build_router_secret(llm, UID, "sk-x")["metadata"]["name"] == "chat-router-key"
    assert router_endpoint(llm) == "http://chat-router.team-a.svc:4000/v1"
    assert endpoint(llm) == router_endpoint(llm)


def test_endpoint_is_the_engine_without_router() -> None:
    llm = make_service("vllm", {"router": {"enabled": False}}, name="chat", namespace="team-a")
    assert endpoint(llm) == "http://chat.team-a.svc:8000/v1"


def test_pinned_image_is_safe() -> None:
    major, minor, _patch = (int(part) for part in LITELLM_VERSION.split("."))
    assert (major, minor) >= (1, 84)
    assert LITELLM_VERSION not in ("1.82.7", "1.82.8")
    assert IMAGE.endswith(f":v{LITELLM_VERSION}")
    llm = make_service("vllm")
    assert container(router_deployment(llm, {}))["image"] == IMAGE
    custom = make_service("vllm", {"router": {"image": "registry.example/litellm:v1"}})
    assert container(router_deployment(custom, {}))["image"] == "registry.example/litellm:v1"


# --- desired_objects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_router_objects_follow_the_engine_objects(engine: str) -> None:
    objects = desired_objects(make_service(engine), UID)
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("Service", "llm"), ("Deployment", "llm"),
        ("ConfigMap", "llm-router"), ("Service", "llm-router"), ("Deployment", "llm-router"),
        ("HorizontalPodAutoscaler", "llm-router"),
    ]
    for obj in objects[2:]:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == "router"
        assert labels["app.kubernetes.io/instance"] == "llm"
        assert labels["app.kubernetes.io/managed-by"] == "llm-operator"
        assert obj["metadata"]["ownerReferences"][0]["uid"] == UID


def test_no_router_objects_when_disabled() -> None:
    objects = desired_objects(make_service("vllm", {"router": {"enabled": False}}), UID)
    assert [o["kind"] for o in objects] == ["Service", "Deployment"]


def test_router_selector_does_not_match_the_engine_pods() -> None:
    llm = make_service("vllm")
    engine, router = (o for o in desired_objects(llm, UID) if o["kind"] == "Deployment")
    assert engine["spec"]["selector"] != router["spec"]["selector"]
    router_service = build_router_service(llm, UID)
    assert router_service["spec"]["selector"] == router["spec"]["selector"]["matchLabels"]
    assert router_service["spec"]["ports"] == [{"name": "http", "port": 4000, "targetPort": "http",
                                                "protocol": "TCP"}]


def test_manifests_are_valid_yaml_round_trips() -> None:
    llm = make_service("ollama", {"router": FALLBACKS})
    objects = desired_objects(llm, UID, fallback_services=OTHER, existing_secrets={"openai"})
    objects.append(build_router_secret(llm, UID, generate_master_key()))
    for obj in objects:
        assert yaml.safe_load(yaml.safe_dump(obj)) == obj
        assert "&id" not in yaml.safe_dump(obj)  # no anchors from shared dicts


# --- secrets -----------------------------------------------------------------------------------------


def test_generated_secret_only_without_a_referenced_key() -> None:
    generated = build_router_secret(make_service("vllm"), UID, SECRET_VALUE)
    assert generated is not None
    assert generated["type"] == "Opaque"
    assert base64.b64decode(generated["data"]["key"]).decode() == SECRET_VALUE
    assert generated["metadata"]["ownerReferences"][0]["uid"] == UID
    own = make_service("vllm", {"router": {"masterKeySecretRef": {"name": "mine", "key": "k"}}})
    assert build_router_secret(own, UID, SECRET_VALUE) is None


def test_generated_master_keys_are_random_and_prefixed() -> None:
    keys = {generate_master_key() for _ in range(20)}
    assert len(keys) == 20
    assert all(key.startswith("sk-") and len(key) >= 40 for key in keys)


@pytest.mark.parametrize("own_key", [False, True])
def test_master_key_comes_from_a_secret_key_ref(own_key: bool) -> None:
    patch = {"router": {"masterKeySecretRef": {"name": "mine", "key": "k"}}} if own_key else {}
    env = env_by_name(container(router_deployment(make_service("vllm", patch), {}))["env"])
    expected = {"name": "mine", "key": "k"} if own_key else {"name": "llm-router-key", "key": "key"}
    assert env["LITELLM_MASTER_KEY"] == {"name": "LITELLM_MASTER_KEY", "valueFrom": {"secretKeyRef": expected}}


def test_fallback_keys_come_from_secret_key_refs_only_when_included() -> None:
    llm = make_service("vllm", {"router": FALLBACKS})
    env = env_by_name(container(router_deployment(llm, OTHER, {"openai"}))["env"])
    assert env["FALLBACK_1_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "openai", "key": "api-key",
                                                                      "optional": True}
    absent = env_by_name(container(router_deployment(llm, OTHER, set()))["env"])
    assert "FALLBACK_1_API_KEY" not in absent


def test_no_secret_value_anywhere_and_only_environment_references_in_the_config() -> None:
    llm = make_service("vllm", {"router": FALLBACKS})
    objects = desired_objects(llm, UID, fallback_services=OTHER, existing_secrets={"openai"})
    for obj in objects:
        assert SECRET_VALUE not in json.dumps(obj)
    (configmap,) = [o for o in objects if o["kind"] == "ConfigMap"]
    text = configmap["data"]["config.yaml"]
    config = yaml.safe_load(text)
    keys = [m["litellm_params"].get("api_key") for m in config["model_list"]]
    assert "os.environ/FALLBACK_1_API_KEY" in keys
    assert {k for k in keys if k and not k.startswith("os.environ/")} == {"no-key-needed"}
    assert config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert "sk-" not in text
    for item in container(router_deployment(llm, OTHER, {"openai"}))["env"]:
        assert "value" not in item or not item["name"].endswith("KEY"), item


# --- Deployment ------------------------------------------------------------------------------------


def test_args_config_mount_and_probes() -> None:
    llm = make_service("vllm", {"router": {"replicas": 3}})
    deployment = router_deployment(llm, {})
    c = container(deployment)
    assert c["args"] == ["--config", "/etc/litellm/config.yaml", "--port", "4000",
                         "--run_granian", "--num_workers", "2"]
    assert "command" not in c  # the image's entrypoint runs `litellm "$@"`
    assert c["ports"] == [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/health/readiness", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health/liveliness", "port": "http"}
    # The HPA owns the replica count; server-side apply must not reset it.
    assert "replicas" not in deployment["spec"]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"] == {"name": "config", "configMap": {"name": "llm-router"}}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/etc/litellm"]["readOnly"] is True
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]


def test_restricted_security_context() -> None:
    deployment = router_deployment(make_service("vllm"), {})
    ctx = container(deployment)["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] != 0
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert ctx["readOnlyRootFilesystem"] is True
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False


def test_checksum_changes_with_the_config_only() -> None:
    base = make_service("vllm", {"router": {"numRetries": 2}})
    same = make_service("vllm", {"router": {"numRetries": 2}})
    retries = make_service("vllm", {"router": {"numRetries": 3}})
    replicas = make_service("vllm", {"router": {"numRetries": 2, "replicas": 4}})
    engine_replicas = make_service("vllm", {"router": {"numRetries": 2}, "replicas": 3})
    assert pod_hash(router_deployment(base, {})) == pod_hash(router_deployment(same, {}))
    assert pod_hash(router_deployment(base, {})) != pod_hash(router_deployment(retries, {}))
    assert pod_hash(router_deployment(base, {})) == pod_hash(router_deployment(replicas, {}))
    assert pod_hash(router_deployment(base, {})) == pod_hash(
        router_deployment(engine_replicas, {}))


def test_checksum_changes_when_a_missing_fallback_appears() -> None:
    llm = make_service("vllm", {"router": {"fallbacks": [{"llmService": "other"}]}})
    assert pod_hash(router_deployment(llm, {})) != pod_hash(router_deployment(llm, OTHER))
    configmap = router_configmap(llm, OTHER)
    assert [m["model_name"] for m in config_of(configmap)["model_list"]] == ["llm", "llm-fallback-1"]


def test_router_pod_template_does_not_depend_on_its_replicas() -> None:
    one = router_deployment(make_service("vllm", {"router": {"replicas": 1}}), {})
    two = router_deployment(make_service("vllm", {"router": {"replicas": 2}}), {})
    assert one["spec"]["template"] == two["spec"]["template"]


def test_tuned_env_and_resources() -> None:
    c = container(router_deployment(make_service("vllm"), {}))
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["LITELLM_LOG"] == "ERROR"
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert c["resources"] == {"requests": {"cpu": "1", "memory": "768Mi"}, "limits": {"memory": "2Gi"}}


@pytest.mark.parametrize(
    ("engine", "autoscaling", "metrics"),
    [
        ("vllm", {}, False),
        ("vllm", {"enabled": True, "minReplicas": 1}, False),
        ("vllm", {"enabled": True, "minReplicas": 0}, True),  # the first request after zero
        ("tgi", {"enabled": True, "minReplicas": 0}, True),
        ("ollama", {}, True),  # the router's gauge is Ollama's only queue signal
    ],
)
def test_router_metrics_only_where_the_autoscaler_needs_them(engine: str, autoscaling: dict, metrics: bool) -> None:
    patch = {"autoscaling": autoscaling} if autoscaling else {}
    if engine == "ollama":
        patch["model"] = {"name": "qwen2.5:7b"}
    service = make_service(engine, patch)
    deployment = router_deployment(service, {})
    env = {e["name"]: e.get("value") for e in container(deployment)["env"]}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    config = yaml.safe_load(router_configmap(service, {})["data"]["config.yaml"])
    assert ("prometheus" in config["litellm_settings"].get("callbacks", [])) is metrics
    assert (annotations.get("prometheus.io/scrape") == "true") is metrics
    # Several workers: /metrics must sum litellm_in_flight_requests over them, from a writable emptyDir.
    assert (env.get("PROMETHEUS_MULTIPROC_DIR", "").startswith("/tmp/")) is metrics


# --- HPA ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("replicas", "maximum"), [(1, 4), (2, 4), (3, 6), (10, 20)])
def test_hpa_scales_the_router_deployment_on_cpu(replicas: int, maximum: int) -> None:
    llm = make_service("vllm", {"router": {"replicas": replicas}})
    hpa = build_router_hpa(llm, UID)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["kind"] == "HorizontalPodAutoscaler"
    assert hpa["metadata"]["name"] == "llm-router"
    assert hpa["metadata"]["namespace"] == "ml"
    assert hpa["metadata"]["labels"]["app.kubernetes.io/component"] == "router"
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == UID
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm-router"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (replicas, maximum)
    assert spec["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
    up, down = spec["behavior"]["scaleUp"], spec["behavior"]["scaleDown"]
    assert up["stabilizationWindowSeconds"] == 0
    assert {"type": "Percent", "value": 100, "periodSeconds": 15} in up["policies"]
    assert down["stabilizationWindowSeconds"] >= 60


def test_hpa_target_has_a_cpu_request() -> None:
    """Utilization is relative to the request: the router container must have one."""
    deployment = router_deployment(make_service("vllm"), {})
    assert container(deployment)["resources"]["requests"]["cpu"]
    assert build_router_hpa(make_service("vllm"), UID)["spec"]["scaleTargetRef"]["name"] == \
        deployment["metadata"]["name"]


def test_no_hpa_without_router() -> None:
    objects = desired_objects(make_service("vllm", {"router": {"enabled": False}}), UID)
    assert "HorizontalPodAutoscaler" not in [o["kind"] for o in objects]


# --- status ------------------------------------------------------------------------------------------


def test_router_status() -> None:
    status, reason, message = router_status(["LLMService llama3-8b", "Secret openai"], 1, 1)
    assert (status, reason) == ("False", "FallbackMissing")
    assert "llama3-8b" in message and "Secret openai" in message
    assert router_status([], 0, 1)[:2] == ("False", "RouterProgressing")
    assert router_status([], None, None)[0] == "Unknown"
    assert router_status([], 2, 2) == ("True", "RouterReady", "router replicas ready: 2/2")


def test_the_config_is_rendered_once_per_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap's text and the Deployment's config hash come from one rendering."""
    from llm_operator.router import objects

    calls: list[int] = []
    real = objects.litellm_config
    monkeypatch.setattr(objects, "litellm_config", lambda *args: calls.append(1) or real(*args))
    service = make_service("vllm", {"router": {"fallbacks": [{"llmService": "other"}]}})
    built = desired_objects(service, UID, None, OTHER)
    assert len(calls) == 1
    configmap = next(o for o in built if o["kind"] == "ConfigMap")
    deployment = next(o for o in built if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-router"))
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations[CONFIG_HASH_ANNOTATION] == config_hash(configmap["data"]["config.yaml"])
