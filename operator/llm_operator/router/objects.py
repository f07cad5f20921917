"""The router's objects: ConfigMap, master-key Secret, Deployment and Service `<name>-router`.

All builders are pure. What the reconcile handler must read and do around them:

- Reads: the LLMServices that spec.router.fallbacks names (same namespace) -> `fallback_services`; which
  referenced Secrets exist (names only: fallbacks' apiKeySecretRef and masterKeySecretRef; never read
  their values) -> `existing_secrets`; the `<name>-router` Deployment's status for readiness.
- The generated master key (`<name>-router-key`, only without masterKeySecretRef) is created once:
  `generate_master_key()` then `build_router_secret(...)`, applied ONLY when the Secret does not exist
  (create, and treat 409 AlreadyExists as done). It is never patched, so it never rotates.
- Status: `router.status.router_status(missing, ready, wanted)` gives the RouterReady condition;
  `status.endpoint` is `router_endpoint(service)`.
- Scaling: the HorizontalPodAutoscaler `<name>-router` (`build_router_hpa`, applied after the Deployment)
  owns the router's replica count between spec.router.replicas and `router_max_replicas`, on CPU. The
  Deployment therefore leaves `spec.replicas` out, so server-side apply never resets what the HPA chose.

Tuning (bench/router_overhead, results in bench/results/router_overhead.md): the proxy runs under Granian
with ROUTER_WORKERS worker processes (`--run_granian --num_workers 2`; uvicorn's workers leave every
keep-alive connection on one worker), LITELLM_LOG=ERROR, no database, the bundled cost map. With more than
one worker, PROMETHEUS_MULTIPROC_DIR (on the /tmp emptyDir) makes /metrics sum litellm_in_flight_requests
over the workers (LiteLLM registers it with multiprocess_mode="livesum"), which the Ollama autoscaling reads.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from llm_operator.api.models import LLMService, SecretKeyRef
from llm_operator.naming import master_key_secret_name, router_name
from llm_operator.resources.common import (
    CONFIG_HASH_ANNOTATION,
    ROUTER_COMPONENT,
    config_hash,
    http_probe,
    image_pull_secrets,
    metadata,
    restricted_security_context,
    selector_labels,
)
from llm_operator.resources.common import labels as common_labels
from llm_operator.router.config import (
    MASTER_KEY_ENV,
    included_key_envs,
    litellm_config,
    router_metrics_enabled,
)

# The newest LiteLLM whose `litellm[proxy]` resolves from PyPI here; hack/install-litellm.sh installs the
# same version for the e2e tests. Never 1.82.7 or 1.82.8 (published compromised on PyPI).
LITELLM_VERSION = "1.108.7"
# The non-root variant (USER nobody, UI pre-built under /var/lib/litellm/ui), signed with cosign.
IMAGE = f"ghcr.io/berriai/litellm-non_root:v{LITELLM_VERSION}"
PORT = 4000
CONFIG_DIR = "/etc/litellm"
CONFIG_FILE = "config.yaml"
CONFIG_VOLUME = "config"
TMP_VOLUME = "tmp"
CACHE_VOLUME = "cache"
RUN_AS_USER = 65534  # nobody, the image's own user
GENERATED_KEY = "key"  # the key of the generated Secret's data
# Granian worker processes per router Pod: each is one Python event loop (one CPU at most).
ROUTER_WORKERS = 2
# Where the workers' prometheus_client files live, so /metrics sums them (on the /tmp emptyDir; LiteLLM
# creates and wipes it at start-up).
PROMETHEUS_MULTIPROC_DIR = "/tmp/prometheus-multiproc"
SCRAPE_ANNOTATIONS = {
    "prometheus.io/scrape": "true",
    "prometheus.io/port": str(PORT),
    "prometheus.io/path": "/metrics/",  # LiteLLM redirects /metrics there
}

# Sizing, from bench/router_overhead (LiteLLM 1.108.7, non-streaming completions, 2-core machine):
# the proxy spends about ROUTER_CPU_MS_PER_REQUEST ms of CPU per request (all its processes, measured
# from /proc), so one CPU carries ~1000/25 = 40 requests/s and ROUTER_WORKERS=2 workers at most ~80/s.
# - CPU request 1: what a Pod is expected to use at the HPA's target (70% of 1 CPU = ~28 requests/s per
#   Pod); no CPU limit, the second worker bursts into idle CPU instead of being throttled (throttling a
#   proxy adds latency to every request).
# - Memory: not measured by the benchmark; 768Mi requested for two workers (the former 512Mi was for
#   one), limit 2Gi for large request bodies and the Prometheus series. Check with a real Pod.
ROUTER_CPU_MS_PER_REQUEST = 25
ROUTER_CPU_REQUEST = "1"
ROUTER_MEMORY_REQUEST = "768Mi"
ROUTER_MEMORY_LIMIT = "2Gi"
# HPA: scale up when the Pods average this share of their CPU request.
ROUTER_CPU_TARGET_PERCENT = 70


def master_key_ref(service: LLMService) -> SecretKeyRef:
    """spec.router.masterKeySecretRef, else the generated Secret."""
    ref = service.spec.router.master_key_secret_ref
    return ref or SecretKeyRef(name=master_key_secret_name(service), key=GENERATED_KEY)


def router_endpoint(service: LLMService) -> str:
    """status.endpoint: the OpenAI-compatible base URL clients use."""
    return f"http://{router_name(service)}.{service.metadata.namespace}.svc:{PORT}/v1"


def generate_master_key() -> str:
    """A new master key (LiteLLM expects keys to start with sk-). Call once, when the Secret is absent."""
    return "sk-" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class RenderedConfig:
    """The router's config for one plan, rendered once: the ConfigMap holds the text, the Deployment
    carries its hash and the API-key variables the text refers to."""

    text: str
    key_envs: list[tuple[str, SecretKeyRef]]


def render_config(
    service: LLMService,
    fallback_services: Mapping[str, LLMService],
    existing_secrets: Collection[str] | None = None,
) -> RenderedConfig:
    text = yaml.safe_dump(
        litellm_config(service, fallback_services, existing_secrets), sort_keys=False, default_flow_style=False
    )
    return RenderedConfig(text, included_key_envs(service, fallback_services, existing_secrets))


def build_router_configmap(service: LLMService, uid: str | None, config: RenderedConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(service, router_name(service), uid, ROUTER_COMPONENT),
        "data": {CONFIG_FILE: config.text},
    }


def build_router_secret(service: LLMService, uid: str | None, master_key: str) -> dict[str, Any] | None:
    """The generated master-key Secret, or None when spec.router.masterKeySecretRef names the user's own.
    Apply it only when absent: it must never be overwritten (that would rotate the key)."""
    if service.spec.router.master_key_secret_ref is not None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(service, master_key_secret_name(service), uid, ROUTER_COMPONENT),
        "type": "Opaque",
        "data": {GENERATED_KEY: base64.b64encode(master_key.encode()).decode()},
    }


def _secret_env(name: str, ref: SecretKeyRef, optional: bool = False) -> dict[str, Any]:
    key_ref: dict[str, Any] = {"name": ref.name, "key": ref.key}
    if optional:
        key_ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": key_ref}}


def router_env(service: LLMService, config: RenderedConfig) -> list[dict[str, Any]]:
    env = [
        # Not optional: without its key the proxy must not start (it would serve without authentication).
        _secret_env(MASTER_KEY_ENV, master_key_ref(service)),
        # Optional: a key removed later makes that fallback fail, not the whole router.
        *(_secret_env(name, ref, optional=True) for name, ref in config.key_envs),
        # The cost map ships with the package; the default download retries for seconds without egress.
        {"name": "LITELLM_LOCAL_MODEL_COST_MAP", "value": "True"},
        # INFO logs a line per request; the request path costs less CPU without them.
        {"name": "LITELLM_LOG", "value": "ERROR"},
        *([{"name": "PROMETHEUS_MULTIPROC_DIR", "value": PROMETHEUS_MULTIPROC_DIR}]
          if router_metrics_enabled(service) else []),
        {"name": "TMPDIR", "value": "/tmp"},
        # Python and libraries that cache under $XDG_CACHE_HOME write to the emptyDir, not the image.
        {"name": "XDG_CACHE_HOME", "value": "/tmp/.cache"},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
    ]
    return env


def router_security_context() -> dict[str, Any]:
    return restricted_security_context(RUN_AS_USER, read_only_root_filesystem=True)


def router_args() -> list[str]:
    """The proxy's command-line arguments (the image's entrypoint is `litellm`)."""
    return ["--config", f"{CONFIG_DIR}/{CONFIG_FILE}", "--port", str(PORT),
            "--run_granian", "--num_workers", str(ROUTER_WORKERS)]


def router_max_replicas(service: LLMService) -> int:
    """The HPA's ceiling: twice the configured floor, and at least 4 (~110 requests/s at the CPU target,
    more than one CPU-only engine replica serves; a GPU engine behind a router of 1 can still be met by 4)."""
    return max(4, 2 * service.spec.router.replicas)



def build_router_deployment(service: LLMService, uid: str | None, config: RenderedConfig) -> dict[str, Any]:
    router = service.spec.router
    container = {
        "name": "litellm",
        "image": router.image or IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": router_args(),
        "env": router_env(service, config),
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "volumeMounts": [
            {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": TMP_VOLUME, "mountPath": "/tmp"},
        ],
        "securityContext": router_security_context(),
        # A failed proxy's log tail becomes lastState.terminated.message (kubectl describe shows it).
        "terminationMessagePolicy": "FallbackToLogsOnError",
        # Import of the proxy takes a while (seconds) on a small CPU share.
        "startupProbe": http_probe("/health/liveliness", period=2, failures=90),
        "readinessProbe": http_probe("/health/readiness", period=5, failures=3),
        "livenessProbe": http_probe("/health/liveliness", period=15, failures=4, timeout=10),
        "resources": {
            # Sized from the benchmark (see ROUTER_CPU_MS_PER_REQUEST). No CPU limit: throttling a proxy
            # adds latency to every request.
            "requests": {"cpu": ROUTER_CPU_REQUEST, "memory": ROUTER_MEMORY_REQUEST},
            "limits": {"memory": ROUTER_MEMORY_LIMIT},
        },
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [
            {"name": CONFIG_VOLUME, "configMap": {"name": router_name(service)}},
            {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "512Mi"}},
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # Long generations (streams) finish during a rollout; the timeout bounds them anyway.
        "terminationGracePeriodSeconds": min(max(30, router.timeout_seconds), 600),
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
    }
    if router.node_selector:
        pod_spec["nodeSelector"] = dict(router.node_selector)
    if router.tolerations:
        pod_spec["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in router.tolerations]
    if service.spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = image_pull_secrets(service)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(service, router_name(service), uid, ROUTER_COMPONENT),
        "spec": {
            # No "replicas": the HPA `<name>-router` owns it (the apiserver defaults a new Deployment to 1,
            # the HPA raises it to minReplicas = spec.router.replicas at once).
            "selector": {"matchLabels": selector_labels(service, ROUTER_COMPONENT)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "revisionHistoryLimit": 5,
            "template": {
                "metadata": {
                    "labels": common_labels(service, ROUTER_COMPONENT),
                    "annotations": {
                        # A config change changes the template, so the Deployment rolls out.
                        CONFIG_HASH_ANNOTATION: config_hash(config.text),
                        **(SCRAPE_ANNOTATIONS if router_metrics_enabled(service) else {}),
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def build_router_service(service: LLMService, uid: str | None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(service, router_name(service), uid, ROUTER_COMPONENT),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(service, ROUTER_COMPONENT),
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def build_router_hpa(service: LLMService, uid: str | None) -> dict[str, Any]:
    """HorizontalPodAutoscaler `<name>-router`: spec.router.replicas to `router_max_replicas`, on the Pods'
    CPU (the router's work is CPU per request). Fast up (double, or +4 Pods, every 15 s, no stabilization:
    a saturated proxy queues every request), slow down (5 min window, half per minute)."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(service, router_name(service), uid, ROUTER_COMPONENT),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": router_name(service)},
            "minReplicas": service.spec.router.replicas,
            "maxReplicas": router_max_replicas(service),
            "metrics": [{
                "type": "Resource",
                "resource": {"name": "cpu",
                             "target": {"type": "Utilization", "averageUtilization": ROUTER_CPU_TARGET_PERCENT}},
            }],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "selectPolicy": "Max",
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15},
                                 {"type": "Pods", "value": 4, "periodSeconds": 15}],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": 300,
                    "selectPolicy": "Max",
                    "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
                },
            },
        },
    }


def router_objects(
    service: LLMService,
    uid: str | None,
    fallback_services: Mapping[str, LLMService],
    existing_secrets: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """ConfigMap, Service, Deployment and HPA, in apply order (the Secret is applied apart, once)."""
    if not service.spec.router.enabled:
        return []
    config = render_config(service, fallback_services, existing_secrets)
    return [
        build_router_configmap(service, uid, config),
        build_router_service(service, uid),
        build_router_deployment(service, uid, config),
        build_router_hpa(service, uid),
    ]


__all__ = [
    "IMAGE",
    "LITELLM_VERSION",
    "PORT",
    "build_router_configmap",
    "build_router_deployment",
    "build_router_hpa",
    "build_router_secret",
    "build_router_service",
    "generate_master_key",
    "master_key_ref",
    "render_config",
    "router_args",
    "router_endpoint",
    "router_max_replicas",
    "router_objects",
]
