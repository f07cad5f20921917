"""The engine Service `<name>`: ClusterIP on the engine's customary port."""

from __future__ import annotations

from typing import Any

from llm_operator.api.models import LLMService
from llm_operator.engines import engine_of
from llm_operator.resources.common import metadata, selector_labels


def build_service(service: LLMService, uid: str | None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(service, service.metadata.name or "", uid),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(service),
            "ports": [{
                "name": "http",
                "port": engine_of(service).service_port,
                "targetPort": "http",
                "protocol": "TCP",
            }],
        },
    }


