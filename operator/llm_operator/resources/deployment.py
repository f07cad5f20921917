"""The engine Deployment `<name>`."""

from __future__ import annotations

from typing import Any

from llm_operator.api.models import LLMService
from llm_operator.autoscale.config import policy_config
from llm_operator.autoscale.policy import bounded
from llm_operator.engines import EngineContainer, container_for
from llm_operator.engines.base import MODEL_CACHE_VOLUME, SHM_VOLUME
from llm_operator.naming import pvc_name
from llm_operator.resources.common import (
    ROLE_LABEL,
    http_probe,
    image_pull_secrets,
    metadata,
    restricted_security_context,
    selector_labels,
)
from llm_operator.resources.common import labels as common_labels

GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
# Large models take many minutes to download and load: the startup probe allows an hour
# before the kubelet gives up; readiness and liveness take over once the engine answers.
STARTUP_PERIOD_SECONDS = 10
STARTUP_FAILURE_THRESHOLD = 360


def probes(engine: EngineContainer) -> dict[str, Any]:
    readiness = http_probe(engine.health_path, period=10, failures=3)
    if engine.readiness_exec:
        readiness = {"exec": {"command": engine.readiness_exec}, "periodSeconds": 10, "failureThreshold": 3}
    return {
        "startupProbe": http_probe(engine.health_path, STARTUP_PERIOD_SECONDS, STARTUP_FAILURE_THRESHOLD),
        "readinessProbe": readiness,
        "livenessProbe": http_probe(engine.health_path, period=20, failures=5, timeout=10),
    }


def container_security_context(engine: EngineContainer) -> dict[str, Any]:
    return restricted_security_context(engine.run_as_user, engine.read_only_root_filesystem)


def resources(service: LLMService) -> dict[str, Any]:
    spec = service.spec.resources
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if spec.cpu is not None:
        requests["cpu"] = str(spec.cpu)
    if spec.memory is not None:
        # Memory limit = request: an engine over its request would be the first to be
        # OOM-killed under node pressure anyway, and a fixed size keeps scheduling honest.
        requests["memory"] = limits["memory"] = str(spec.memory)
    if spec.gpus > 0:
        limits[spec.gpu_resource] = str(spec.gpus)
    result: dict[str, Any] = {}
    if requests:
        result["requests"] = requests
    if limits:
        result["limits"] = limits
    return result


def tolerations(service: LLMService) -> list[dict[str, Any]]:
    spec = service.spec.resources
    result = [t.model_dump(by_alias=True, exclude_none=True) for t in spec.tolerations]
    if spec.gpus > 0:
        keys = {GPU_TAINT_KEY, spec.gpu_resource} if "/" in spec.gpu_resource else {GPU_TAINT_KEY}
        existing = {t.get("key") for t in result}
        for key in sorted(keys - existing):
            result.append({"key": key, "operator": "Exists", "effect": "NoSchedule"})
    return result


def node_selector(service: LLMService) -> dict[str, str]:
    spec = service.spec.resources
    selector = dict(spec.node_selector)
    if spec.gpu_product and spec.gpus > 0:
        selector[GPU_PRODUCT_LABEL] = spec.gpu_product
    return selector


def volumes(service: LLMService, engine: EngineContainer) -> tuple[list[dict], list[dict]]:
    """Pod volumes and the engine container's mounts."""
    if service.spec.storage is not None:
        cache = {"name": MODEL_CACHE_VOLUME, "persistentVolumeClaim": {"claimName": pvc_name(service)}}
    else:
        cache = {"name": MODEL_CACHE_VOLUME, "emptyDir": {}}
    pod_volumes = [cache]
    mounts = [{"name": MODEL_CACHE_VOLUME, "mountPath": engine.cache_mount_path}]
    if engine.shm_size_limit is not None:
        shm: dict[str, Any] = {"medium": "Memory"}
        if engine.shm_size_limit:
            shm["sizeLimit"] = engine.shm_size_limit
        pod_volumes.append({"name": SHM_VOLUME, "emptyDir": shm})
        mounts.append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})
    return pod_volumes, mounts


def dedupe_env(env: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Later entries win (a user's serving.env overrides ours); names stay unique, which
    server-side apply requires of a list keyed by name."""
    by_name: dict[str, dict[str, Any]] = {}
    for item in env:
        by_name.pop(item["name"], None)
        by_name[item["name"]] = item
    return list(by_name.values())


def engine_container(service: LLMService, engine: EngineContainer, mounts: list[dict],
                     serves_api: bool = True) -> dict[str, Any]:
    """The engine container; a multi-node group's worker (`serves_api` False) has no port and no probes: it
    joins the leader's engine, whose health check covers the whole group."""
    container: dict[str, Any] = {
        "name": "engine",
        "image": engine.image,
        "imagePullPolicy": "IfNotPresent",
        "command": engine.command,
        "args": engine.args,
        "env": dedupe_env(engine.env),
        "ports": [{"name": "http", "containerPort": engine.port, "protocol": "TCP"}],
        "volumeMounts": mounts,
        "securityContext": container_security_context(engine),
        # A failed container's log tail becomes lastState.terminated.message, which status quotes.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        **probes(engine),
    }
    if not serves_api:
        for key in ("ports", "startupProbe", "readinessProbe", "livenessProbe"):
            del container[key]
    res = resources(service)
    if res:
        container["resources"] = res
    return container


def replicas(service: LLMService, autoscaled_replicas: int | None) -> int:
    """spec.replicas, unless the autoscaler owns the count (its decision, within its bounds)."""
    if service.spec.autoscaling.enabled:
        wanted = service.spec.replicas if autoscaled_replicas is None else autoscaled_replicas
        return bounded(wanted, policy_config(service.spec))
    return service.spec.replicas


def engine_pod_template(service: LLMService, engine: EngineContainer, role: str | None = None,
                        affinity: dict[str, Any] | None = None, serves_api: bool = True) -> dict[str, Any]:
    """The engine Pod template: the same for a Deployment's Pods and for the leader and workers of a
    LeaderWorkerSet group, whose `role` labels them (the engine Service selects the leaders)."""
    pod_volumes, mounts = volumes(service, engine)
    init_containers = [
        {**init, "env": dedupe_env(init.get("env", [])), "securityContext": container_security_context(engine),
         "terminationMessagePolicy": "FallbackToLogsOnError"}
        for init in engine.init_containers
    ]
    pod_spec: dict[str, Any] = {
        "containers": [engine_container(service, engine, mounts, serves_api)],
        "volumes": pod_volumes,
        "securityContext": {
            "runAsNonRoot": True,
            "fsGroup": engine.run_as_user,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # Engines drain in-flight requests on SIGTERM; long generations need the time.
        "terminationGracePeriodSeconds": 120,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
    }
    if init_containers:
        pod_spec["initContainers"] = init_containers
    if tolerations(service):
        pod_spec["tolerations"] = tolerations(service)
    if node_selector(service):
        pod_spec["nodeSelector"] = node_selector(service)
    affinity = affinity or service.spec.resources.affinity
    if affinity:
        pod_spec["affinity"] = affinity
    if service.spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = image_pull_secrets(service)
    annotations: dict[str, str] = {}
    if engine.metrics_path and serves_api:
        annotations.update({"prometheus.io/scrape": "true", "prometheus.io/port": str(engine.port),
                            "prometheus.io/path": engine.metrics_path})
    labels = common_labels(service)
    if role:
        labels[ROLE_LABEL] = role
    template_meta: dict[str, Any] = {"labels": labels}
    if annotations:
        template_meta["annotations"] = annotations
    return {"metadata": template_meta, "spec": pod_spec}


def build_deployment(service: LLMService, uid: str | None, autoscaled_replicas: int | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(service, service.metadata.name or "", uid),
        "spec": {
            "replicas": replicas(service, autoscaled_replicas),
            "selector": {"matchLabels": selector_labels(service)},
            # One extra Pod at a time and never fewer ready than wanted: a rollout needs one
            # spare GPU slot, and without one the old Pods keep serving while the new waits.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": 3600,
            "template": engine_pod_template(service, container_for(service)),
        },
    }
