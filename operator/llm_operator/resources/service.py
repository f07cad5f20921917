"""The engine Service `<name>`: ClusterIP on the engine's customary port."""

from __future__ import annotations

from typing import Any

from llm_operator.api.models import LLMService
from llm_operator.engines import engine_of
from llm_operator.engines.base import multi_node
from llm_operator.resources.common import LEADER_ROLE, ROLE_LABEL, metadata, selector_labels


def engine_selector(service: LLMService) -> dict[str, str]:
    """The engine Pods that serve the API: all of them, or a multi-node group's leaders (workers serve none)."""
    selector = selector_labels(service)
    if multi_node(service.spec):
        selector[ROLE_LABEL] = LEADER_ROLE
    return selector


def build_service(service: LLMService, uid: str | None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(service, service.metadata.name or "", uid),
        "spec": {
            "type": "ClusterIP",
            "selector": engine_selector(service),
            "ports": [{
                "name": "http",
                "port": engine_of(service).service_port,
                "targetPort": "http",
                "protocol": "TCP",
            }],
        },
    }


