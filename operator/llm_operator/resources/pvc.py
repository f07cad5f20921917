"""The model cache PersistentVolumeClaim `<name>-model-cache`, only when spec.storage is set.

It is owned by the LLMService (deleted with it) but never replaced: a claim's storage class
and access mode are immutable, and the weights in it took long to download. The only change
we make to an existing claim is to grow it.
"""

from __future__ import annotations

from typing import Any

from llm_operator.api.models import LLMService
from llm_operator.api.quantity import quantity_bytes
from llm_operator.naming import pvc_name
from llm_operator.resources.common import metadata


def build_pvc(service: LLMService, uid: str | None) -> dict[str, Any] | None:
    storage = service.spec.storage
    if storage is None:
        return None
    spec: dict[str, Any] = {
        "accessModes": [storage.access_mode],
        "resources": {"requests": {"storage": str(storage.size)}},
    }
    if storage.storage_class_name:
        spec["storageClassName"] = storage.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(service, pvc_name(service), uid),
        "spec": spec,
    }


def pvc_change(existing: dict[str, Any] | None, desired: dict[str, Any]) -> dict[str, Any]:
    """The claim to apply: the desired one when absent; for an existing claim, its own
    immutable fields (access modes, storage class) and the larger of the two sizes, so an
    edit to spec.storage can grow the cache but never fails on, or loses, the weights."""
    if existing is None:
        return desired
    current_spec = existing.get("spec", {})
    current = current_spec.get("resources", {}).get("requests", {}).get("storage")
    wanted = desired["spec"]["resources"]["requests"]["storage"]
    size = wanted if current is None or quantity_bytes(wanted) > quantity_bytes(current) else current
    spec: dict[str, Any] = {
        "accessModes": current_spec.get("accessModes", desired["spec"]["accessModes"]),
        "resources": {"requests": {"storage": size}},
    }
    if current_spec.get("storageClassName"):
        spec["storageClassName"] = current_spec["storageClassName"]
    return {**desired, "spec": spec}
