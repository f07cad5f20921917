"""Small builders of LLMService objects for the unit tests of the pure core.

`spec_for("tgi", {"serving": {...}})` is a spec dict with a sensible model for the engine and the
patch merged in recursively; `make_service` validates it into an `LLMService`, `manifest` gives the
plain dict the apiserver would return (what `make_plan` takes).
"""

from __future__ import annotations

import copy
from typing import Any

from llm_operator.api.models import LLMService

API_VERSION = "serving.llm-operator.io/v1alpha1"
NAME = "llm"
NAMESPACE = "ml"
UID = "6f1c2b1e-0000-4000-8000-000000000001"
DEFAULT_MODEL = {
    "vllm": "meta-llama/Llama-3.1-8B-Instruct",
    "tgi": "meta-llama/Llama-3.1-8B-Instruct",
    "ollama": "qwen2.5:7b-instruct",
    "sglang": "meta-llama/Llama-3.1-8B-Instruct",
}
ENGINES = tuple(DEFAULT_MODEL)


def merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`base` with `patch` merged in, recursively for dicts (lists and scalars replace)."""
    result = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def spec_for(engine: str = "vllm", patch: dict[str, Any] | None = None) -> dict[str, Any]:
    return merged({"engine": engine, "model": {"name": DEFAULT_MODEL[engine]}}, patch or {})


def manifest(
    engine: str = "vllm",
    patch: dict[str, Any] | None = None,
    *,
    name: str = NAME,
    namespace: str = NAMESPACE,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": API_VERSION, "kind": "LLMService", "metadata": metadata, "spec": spec_for(engine, patch)}


def make_service(
    engine: str = "vllm",
    patch: dict[str, Any] | None = None,
    *,
    name: str = NAME,
    namespace: str = NAMESPACE,
    annotations: dict[str, str] | None = None,
) -> LLMService:
    return LLMService.model_validate(
        manifest(engine, patch, name=name, namespace=namespace, annotations=annotations)
    )


def env_by_name(env: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    names = [item["name"] for item in env]
    assert len(names) == len(set(names)), f"duplicate env names: {names}"
    return {item["name"]: item for item in env}
