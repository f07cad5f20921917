"""The engine Deployment: env, resources, probes, volumes, scheduling, security, labels, replicas."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from llm_operator.plan import desired_objects
from llm_operator.resources import build_deployment
from unit.factories import ENGINES, UID, env_by_name, make_service

STANDARD_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by")
HEALTH = {"vllm": "/health", "tgi": "/health", "ollama": "/", "sglang": "/health"}
CACHE_PATH = {"vllm": "/model-cache", "tgi": "/data", "ollama": "/ollama", "sglang": "/model-cache"}
CONTAINER_PORT = {"vllm": 8000, "tgi": 8080, "ollama": 11434, "sglang": 30000}
TOKEN = {"tokenSecretRef": {"name": "hf-token", "key": "token"}}


def deployment(engine: str = "vllm", patch: dict | None = None, uid: str | None = UID, **kwargs: Any) -> dict:
    return build_deployment(make_service(engine, patch, **kwargs), uid)


def pod_spec(engine: str = "vllm", patch: dict | None = None, **kwargs: Any) -> dict:
    return deployment(engine, patch, **kwargs)["spec"]["template"]["spec"]


def engine_container(engine: str = "vllm", patch: dict | None = None, **kwargs: Any) -> dict:
    (container,) = pod_spec(engine, patch, **kwargs)["containers"]
    assert container["name"] == "engine"
    return container


def all_containers(spec: dict) -> list[dict]:
    return [*spec.get("initContainers", []), *spec["containers"]]


# --- identity ---------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_name_namespace_and_kind(engine: str) -> None:
    dep = deployment(engine, name="chat", namespace="team-a")
    assert (dep["apiVersion"], dep["kind"]) == ("apps/v1", "Deployment")
    assert dep["metadata"]["name"] == "chat"
    assert dep["metadata"]["namespace"] == "team-a"


@pytest.mark.parametrize("engine", ENGINES)
def test_standard_labels_on_object_and_pod_template(engine: str) -> None:
    dep = deployment(engine, name="chat")
    expected = {
        "app.kubernetes.io/name": engine,
        "app.kubernetes.io/instance": "chat",
        "app.kubernetes.io/managed-by": "llm-operator",
    }
    for labels in (dep["metadata"]["labels"], dep["spec"]["template"]["metadata"]["labels"]):
        assert {key: labels[key] for key in STANDARD_LABELS} == expected


@pytest.mark.parametrize("engine", ENGINES)
def test_selector_matches_the_pod_template_and_is_stable(engine: str) -> None:
    dep = deployment(engine, name="chat")
    selector = dep["spec"]["selector"]["matchLabels"]
    template_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= template_labels.items()
    assert selector["app.kubernetes.io/instance"] == "chat"
    # the selector is immutable: it must not depend on anything a user can change
    other = deployment("vllm" if engine != "vllm" else "tgi", {"replicas": 3, "resources": {"gpus": 4}}, name="chat")
    assert other["spec"]["selector"]["matchLabels"] == selector


def test_owner_reference_marks_the_llmservice_as_controller() -> None:
    (owner,) = deployment(name="chat")["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "serving.llm-operator.io/v1alpha1",
        "kind": "LLMService",
        "name": "chat",
        "uid": UID,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_no_owner_reference_without_uid() -> None:
    assert "ownerReferences" not in deployment(uid=None)["metadata"]


# --- env ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["vllm", "tgi"])
def test_hf_token_comes_from_the_secret(engine: str) -> None:
    env = env_by_name(engine_container(engine, {"model": TOKEN})["env"])
    assert env["HF_TOKEN"] == {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}},
    }
    assert "value" not in env["HF_TOKEN"]


@pytest.mark.parametrize("engine", ENGINES)
def test_no_hf_token_without_secret_ref(engine: str) -> None:
    assert "HF_TOKEN" not in env_by_name(engine_container(engine)["env"])


@pytest.mark.parametrize("engine", ENGINES)
def test_no_env_var_anywhere_carries_a_literal_token(engine: str) -> None:
    spec = pod_spec(engine, {"model": TOKEN})
    for container in all_containers(spec):
        for item in container.get("env", []):
            if "TOKEN" in item["name"]:
                assert "value" not in item, item


@pytest.mark.parametrize("engine", ENGINES)
def test_user_env_overrides_defaults_without_duplicates(engine: str) -> None:
    user = [
        {"name": "HOME", "value": "/custom-home"},
        {"name": "EXTRA", "value": "1"},
        {"name": "FROM_FIELD", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    container = engine_container(engine, {"serving": {"env": user}})
    env = env_by_name(container["env"])  # asserts the names are unique
    assert env["HOME"] == {"name": "HOME", "value": "/custom-home"}
    assert env["EXTRA"] == {"name": "EXTRA", "value": "1"}
    assert env["FROM_FIELD"] == {"name": "FROM_FIELD", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}


@pytest.mark.parametrize("engine", ["vllm", "tgi"])
def test_user_env_can_replace_hf_token(engine: str) -> None:
    user = [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "other", "key": "k"}}}]
    env = env_by_name(engine_container(engine, {"model": TOKEN, "serving": {"env": user}})["env"])
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "other", "key": "k"}


def test_ollama_init_container_env_is_unique_and_user_env_applies() -> None:
    spec = pod_spec("ollama", {"serving": {"env": [{"name": "OLLAMA_KEEP_ALIVE", "value": "10m"}]}})
    (pull,) = spec["initContainers"]
    env = env_by_name(pull["env"])
    assert env["OLLAMA_KEEP_ALIVE"]["value"] == "10m"
    assert env["OLLAMA_HOST"]["value"] == "127.0.0.1:11434"
    assert env_by_name(spec["containers"][0]["env"])["OLLAMA_KEEP_ALIVE"]["value"] == "10m"


def test_user_cannot_open_the_pull_server_to_the_network() -> None:
    spec = pod_spec("ollama", {"serving": {"env": [{"name": "OLLAMA_HOST", "value": "0.0.0.0:9999"}]}})
    assert env_by_name(spec["initContainers"][0]["env"])["OLLAMA_HOST"]["value"] == "127.0.0.1:11434"
    assert env_by_name(spec["containers"][0]["env"])["OLLAMA_HOST"]["value"] == "0.0.0.0:9999"


# --- resources ----------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_gpu_limit_cpu_and_memory(engine: str) -> None:
    container = engine_container(engine, {"resources": {"gpus": 2, "cpu": "8", "memory": "64Gi"}})
    assert container["resources"] == {
        "requests": {"cpu": "8", "memory": "64Gi"},
        "limits": {"memory": "64Gi", "nvidia.com/gpu": "2"},
    }


@pytest.mark.parametrize(
    "gpu_resource", ["amd.com/gpu", "nvidia.com/mig-3g.40gb", "gpu.intel.com/i915"],
)
def test_other_gpu_resources(gpu_resource: str) -> None:
    container = engine_container("vllm", {"resources": {"gpus": 1, "gpuResource": gpu_resource}})
    assert container["resources"]["limits"] == {gpu_resource: "1"}


@pytest.mark.parametrize("engine", ENGINES)
def test_no_gpu_limit_on_cpu(engine: str) -> None:
    container = engine_container(engine, {"resources": {"gpus": 0, "cpu": "4", "memory": "16Gi"}})
    assert container["resources"] == {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"memory": "16Gi"}}


def test_default_is_one_gpu_and_no_cpu_memory_requests() -> None:
    assert engine_container("vllm")["resources"] == {"limits": {"nvidia.com/gpu": "1"}}


def test_no_resources_at_all_on_cpu_without_requests() -> None:
    assert "resources" not in engine_container("ollama", {"resources": {"gpus": 0}})


def test_integer_quantities_are_rendered_as_strings() -> None:
    container = engine_container("vllm", {"resources": {"cpu": 8, "memory": 68719476736}})
    assert container["resources"]["requests"] == {"cpu": "8", "memory": "68719476736"}
    assert container["resources"]["limits"]["memory"] == "68719476736"


def test_no_cpu_limit() -> None:
    container = engine_container("vllm", {"resources": {"cpu": "7500m"}})
    assert container["resources"]["requests"]["cpu"] == "7500m"
    assert "cpu" not in container["resources"]["limits"]


# --- ports and probes ---------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_container_port_is_named_http(engine: str) -> None:
    assert engine_container(engine)["ports"] == [
        {"name": "http", "containerPort": CONTAINER_PORT[engine], "protocol": "TCP"}
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_probes(engine: str) -> None:
    container = engine_container(engine)
    startup = container["startupProbe"]
    # large models take many minutes to download and load
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30 * 60
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": HEALTH[engine], "port": "http"}, probe
    # liveness must not kill an engine that answers slowly under load
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60


# --- volumes ----------------------------------------------------------------------------------


def volumes_and_mounts(engine: str, patch: dict | None = None) -> tuple[dict, dict]:
    spec = pod_spec(engine, patch)
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    return volumes, mounts


@pytest.mark.parametrize("engine", ENGINES)
def test_model_cache_is_an_empty_dir_without_storage(engine: str) -> None:
    volumes, mounts = volumes_and_mounts(engine)
    assert volumes["model-cache"] == {"name": "model-cache", "emptyDir": {}}
    assert mounts[CACHE_PATH[engine]] == "model-cache"


@pytest.mark.parametrize("engine", ENGINES)
def test_model_cache_is_the_claim_with_storage(engine: str) -> None:
    spec = pod_spec(engine, {"storage": {"size": "100Gi"}}, name="chat")
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["model-cache"] == {"name": "model-cache", "persistentVolumeClaim": {"claimName": "chat-model-cache"}}
    assert {"name": "model-cache", "mountPath": CACHE_PATH[engine]} in spec["containers"][0]["volumeMounts"]


@pytest.mark.parametrize(("gpus", "limit"), [(0, {"sizeLimit": "1Gi"}), (1, {"sizeLimit": "1Gi"}), (2, {}), (4, {})])
def test_vllm_always_has_shared_memory_unbounded_with_several_gpus(gpus: int, limit: dict) -> None:
    """The engine core's shared-memory queue needs 160 MiB even with one worker (64 MiB by default)."""
    volumes, mounts = volumes_and_mounts("vllm", {"resources": {"gpus": gpus}})
    assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory", **limit}


@pytest.mark.parametrize("gpus", [0, 1, 2])
def test_tgi_shared_memory_always_1gi(gpus: int) -> None:
    volumes, mounts = volumes_and_mounts("tgi", {"resources": {"gpus": gpus}})
    assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}


@pytest.mark.parametrize("gpus", [0, 1])
def test_ollama_has_no_shared_memory_volume(gpus: int) -> None:
    _, mounts = volumes_and_mounts("ollama", {"resources": {"gpus": gpus}})
    assert "/dev/shm" not in mounts


@pytest.mark.parametrize("engine", ENGINES)
def test_every_mount_has_a_volume(engine: str) -> None:
    spec = pod_spec(engine, {"resources": {"gpus": 2}} if engine != "ollama" else None)
    names = {v["name"] for v in spec["volumes"]}
    for container in all_containers(spec):
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in names


# --- scheduling ---------------------------------------------------------------------------------


GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@pytest.mark.parametrize("engine", ENGINES)
def test_gpu_toleration_added_with_gpus(engine: str) -> None:
    assert GPU_TOLERATION in pod_spec(engine, {"resources": {"gpus": 1}})["tolerations"]


@pytest.mark.parametrize("engine", ENGINES)
def test_no_gpu_toleration_on_cpu(engine: str) -> None:
    assert "tolerations" not in pod_spec(engine, {"resources": {"gpus": 0}})


def test_user_tolerations_are_kept_and_gpu_toleration_added() -> None:
    user = [
        {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
    ]
    tolerations = pod_spec("vllm", {"resources": {"tolerations": user}})["tolerations"]
    assert tolerations[:2] == user
    assert GPU_TOLERATION in tolerations


def test_user_tolerations_kept_on_cpu() -> None:
    user = [{"key": "dedicated", "operator": "Equal", "value": "cpu", "effect": "NoSchedule"}]
    assert pod_spec("ollama", {"resources": {"gpus": 0, "tolerations": user}})["tolerations"] == user


def test_user_gpu_toleration_is_not_duplicated() -> None:
    user = [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    tolerations = pod_spec("vllm", {"resources": {"tolerations": user}})["tolerations"]
    assert [t for t in tolerations if t.get("key") == "nvidia.com/gpu"] == user


def test_amd_gpus_tolerate_the_amd_taint() -> None:
    tolerations = pod_spec("vllm", {"resources": {"gpuResource": "amd.com/gpu"}})["tolerations"]
    assert {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations


def test_gpu_product_node_selector_merged_with_user_selector() -> None:
    spec = pod_spec("vllm", {"resources": {"gpuProduct": "NVIDIA-H100-80GB-HBM3",
                                           "nodeSelector": {"topology.kubernetes.io/zone": "eu-west-1a"}}})
    assert spec["nodeSelector"] == {
        "topology.kubernetes.io/zone": "eu-west-1a",
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    }


def test_user_node_selector_alone() -> None:
    spec = pod_spec("ollama", {"resources": {"gpus": 0, "nodeSelector": {"kubernetes.io/arch": "amd64"}}})
    assert spec["nodeSelector"] == {"kubernetes.io/arch": "amd64"}


def test_no_node_selector_by_default() -> None:
    assert "nodeSelector" not in pod_spec("vllm")


def test_affinity_is_passed_through() -> None:
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["40000"]}]}
    ]}}}
    assert pod_spec("tgi", {"resources": {"affinity": copy.deepcopy(affinity)}})["affinity"] == affinity
    assert "affinity" not in pod_spec("tgi")


# --- security -----------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_containers_and_init_containers_are_locked_down(engine: str) -> None:
    spec = pod_spec(engine)
    containers = all_containers(spec)
    if engine == "ollama":
        assert len(containers) == 2
    for container in containers:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context.get("privileged", False) is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False


# --- replicas -----------------------------------------------------------------------------------


def test_replicas_from_spec_when_autoscaling_is_off() -> None:
    assert deployment("vllm", {"replicas": 3})["spec"]["replicas"] == 3
    # an autoscaler value is ignored while autoscaling is off
    assert build_deployment(make_service("vllm", {"replicas": 3}), UID, autoscaled_replicas=7)["spec"]["replicas"] == 3


def test_replicas_zero_when_off() -> None:
    assert deployment("vllm", {"replicas": 0})["spec"]["replicas"] == 0


@pytest.mark.parametrize(
    ("replicas", "autoscaled", "expected"),
    [
        (1, 2, 2),   # the autoscaler's value wins
        (3, 0, 0),   # scale to zero allowed by minReplicas 0
        (1, 9, 4),   # clamped to maxReplicas
        (1, None, 1),
        (9, None, 4),  # without an autoscaler value: spec.replicas clamped
    ],
)
def test_replicas_when_autoscaling(replicas: int, autoscaled: int | None, expected: int) -> None:
    service = make_service("vllm", {"replicas": replicas,
                                    "autoscaling": {"enabled": True, "minReplicas": 0, "maxReplicas": 4}})
    assert build_deployment(service, UID, autoscaled_replicas=autoscaled)["spec"]["replicas"] == expected


def test_autoscaled_replicas_clamped_to_min() -> None:
    service = make_service("vllm", {"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 4}})
    assert build_deployment(service, UID, autoscaled_replicas=1)["spec"]["replicas"] == 2
    assert build_deployment(service, UID)["spec"]["replicas"] == 2


def test_rolling_update_never_drops_a_serving_replica() -> None:
    strategy = deployment()["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


# --- determinism --------------------------------------------------------------------------------


FULL = {
    "model": {"servedName": "x", "revision": "main", "tokenSecretRef": {"name": "hf", "key": "t"}},
    "resources": {"gpus": 2, "cpu": "8", "memory": "64Gi", "gpuProduct": "NVIDIA-L40S",
                  "nodeSelector": {"b": "2", "a": "1"}, "gpuResource": "amd.com/gpu",
                  "tolerations": [{"key": "z", "operator": "Exists"}]},
    "serving": {"maxModelLen": 8192, "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}],
                "extraArgs": ["--x"]},
    "storage": {"size": "10Gi"},
}


@pytest.mark.parametrize("engine", ENGINES)
def test_building_twice_gives_identical_manifests(engine: str) -> None:
    patch = copy.deepcopy(FULL)
    if engine == "ollama":
        patch["resources"]["gpus"] = 1
        del patch["model"]["revision"]
    first = desired_objects(make_service(engine, patch), UID)
    second = desired_objects(make_service(engine, copy.deepcopy(patch)), UID)
    assert first == second
    assert repr(first) == repr(second)  # same key order too


@pytest.mark.parametrize("engine", ENGINES)
def test_pod_template_does_not_depend_on_replicas(engine: str) -> None:
    """A scale (by kubectl or the autoscaler) must not roll the model servers."""
    one = deployment(engine, {"replicas": 1})["spec"]["template"]
    five = deployment(engine, {"replicas": 5})["spec"]["template"]
    assert one == five


def test_pod_template_changes_when_the_spec_does() -> None:
    before = deployment("vllm", {"serving": {"maxModelLen": 8192}})["spec"]["template"]
    after = deployment("vllm", {"serving": {"maxModelLen": 16384}})["spec"]["template"]
    assert before != after


def test_metrics_annotations_for_scraping() -> None:
    annotations = deployment("vllm")["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "8000", "prometheus.io/path": "/metrics",
    }
    tgi = deployment("tgi")["spec"]["template"]["metadata"]["annotations"]
    assert tgi["prometheus.io/port"] == "8080"
    assert "annotations" not in deployment("ollama")["spec"]["template"]["metadata"]
