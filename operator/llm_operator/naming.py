"""Every name the operator gives an object it creates, and the engine's in-cluster URL, in one place.

All derive from the LLMService's own name (and namespace), so they are stable for the object's life:
- the engine Deployment and Service: NAME;
- the router Deployment, Service, ConfigMap and HorizontalPodAutoscaler: NAME-router;
- the generated router master key Secret: NAME-router-key;
- the model cache PersistentVolumeClaim: NAME-model-cache.
"""

from __future__ import annotations

from llm_operator.api.models import LLMService
from llm_operator.engines import engine_of


def engine_name(service: LLMService) -> str:
    return service.metadata.name or ""


def router_name(service: LLMService) -> str:
    return f"{service.metadata.name}-router"


def master_key_secret_name(service: LLMService) -> str:
    return f"{service.metadata.name}-router-key"


def pvc_name(service: LLMService) -> str:
    return f"{service.metadata.name}-model-cache"


def engine_url(service: LLMService) -> str:
    """The engine Service's in-cluster base URL (no path)."""
    port = engine_of(service).service_port
    return f"http://{service.metadata.name}.{service.metadata.namespace}.svc:{port}"
