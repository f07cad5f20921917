"""What every child object shares: names, labels, owner references, the config hash."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from llm_operator import GROUP, KIND, VERSION
from llm_operator.api.models import LLMService

MANAGED_BY = "llm-operator"
ENGINE_COMPONENT = "engine"
ROUTER_COMPONENT = "router"
SKIP_FIT_CHECK_ANNOTATION = f"{GROUP}/skip-fit-check"
# leader | worker, on the Pods of a multi-node group (a LeaderWorkerSet): the engine Service selects leaders.
ROLE_LABEL = f"{GROUP}/role"
LEADER_ROLE = "leader"
WORKER_ROLE = "worker"
CONFIG_HASH_ANNOTATION = f"{GROUP}/config-hash"


def labels(service: LLMService, component: str = ENGINE_COMPONENT) -> dict[str, str]:
    """The contract's labels on every child, plus the component that tells engine from router."""
    name = service.spec.engine if component == ENGINE_COMPONENT else "litellm"
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": service.metadata.name or "",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "llm-operator",
    }


def selector_labels(service: LLMService, component: str = ENGINE_COMPONENT) -> dict[str, str]:
    """Immutable Deployment selectors: only labels that never change for the object's life."""
    return {
        "app.kubernetes.io/instance": service.metadata.name or "",
        "app.kubernetes.io/component": component,
    }


def selector_string(service: LLMService, component: str = ENGINE_COMPONENT) -> str:
    return ",".join(f"{key}={value}" for key, value in selector_labels(service, component).items())


def owner_reference(service: LLMService, uid: str) -> dict[str, Any]:
    # blockOwnerDeletion lets foreground deletion wait for the children; controller marks
    # us as the one manager, so other controllers will not adopt them.
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": service.metadata.name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(service: LLMService, name: str, uid: str | None, component: str = ENGINE_COMPONENT) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": service.metadata.namespace,
        "labels": labels(service, component),
    }
    if uid:
        meta["ownerReferences"] = [owner_reference(service, uid)]
    return meta


def config_hash(data: Any) -> str:
    """A stable short hash of any JSON-able data (dict key order does not matter)."""
    encoded = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def http_probe(path: str, period: int, failures: int, timeout: int = 5) -> dict[str, Any]:
    """An HTTP probe on the container's port named "http"."""
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def restricted_security_context(user: int, read_only_root_filesystem: bool) -> dict[str, Any]:
    """The Pod Security Standard "restricted" profile for one container."""
    return {
        "runAsNonRoot": True,
        "runAsUser": user,
        "runAsGroup": user,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": read_only_root_filesystem,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def image_pull_secrets(service: LLMService) -> list[dict[str, str]]:
    """The Pods' imagePullSecrets (engine and router alike)."""
    return [{"name": ref.name} for ref in service.spec.image_pull_secrets]
