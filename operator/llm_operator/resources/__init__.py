"""One builder per Kubernetes object; `desired_objects` lists them in apply order."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from llm_operator.api.models import LLMService
from llm_operator.resources.deployment import build_deployment
from llm_operator.resources.pvc import build_pvc
from llm_operator.resources.router import router_objects
from llm_operator.resources.service import build_service


def desired_objects(
    service: LLMService,
    uid: str | None,
    autoscaled_replicas: int | None = None,
    fallback_services: Mapping[str, LLMService] | None = None,
    existing_secrets: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """The engine's children: the cache claim first (the Pods mount it), then Service and Deployment;
    then, when spec.router.enabled, the router's ConfigMap, Service and Deployment.

    `fallback_services` (the namespace's LLMServices by name) and `existing_secrets` (names of the
    Secrets that exist) decide which fallbacks the router config includes; see resources.router. The
    generated master-key Secret is not listed: it is created once, apart (build_router_secret)."""
    objects: list[dict[str, Any]] = []
    pvc = build_pvc(service, uid)
    if pvc is not None:
        objects.append(pvc)
    objects.append(build_service(service, uid))
    objects.append(build_deployment(service, uid, autoscaled_replicas))
    objects.extend(router_objects(service, uid, fallback_services or {}, existing_secrets))
    return objects


__all__ = ["build_deployment", "build_pvc", "build_service", "desired_objects", "router_objects"]
