"""Thin helpers around the kubernetes client: server-side apply, status patches, reads.

Every write goes through `apply` with one field manager, so `kubectl get -o yaml
--show-managed-fields` shows exactly which fields the operator owns, and a user's edits to
fields it does not own (for example an annotation added by hand) survive its reconciles.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

from llm_operator import FIELD_MANAGER, GROUP, PLURAL, VERSION

_lock = threading.Lock()


@functools.cache
def api_client() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


@functools.cache
def dynamic() -> DynamicClient:
    with _lock:
        return DynamicClient(api_client())


def _resource(api_version: str, kind: str):
    return dynamic().resources.get(api_version=api_version, kind=kind)


def apply(manifest: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply under the operator's field manager; takes ownership on conflict."""
    resource = _resource(manifest["apiVersion"], manifest["kind"])
    result = dynamic().server_side_apply(
        resource,
        body=manifest,
        namespace=manifest["metadata"].get("namespace"),
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
    )
    return result.to_dict()


def get(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return _resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
    except NotFoundError:
        return None


def list_objects(api_version: str, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
    items = _resource(api_version, kind).get(namespace=namespace, label_selector=label_selector)
    return [item.to_dict() for item in items.items]


def patch_llmservice_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    """Merge-patch the status subresource; the spec is never written."""
    client.CustomObjectsApi(api_client()).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": status}
    )
