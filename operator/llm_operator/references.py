"""Secrets the engine Pods reference, and which of them are missing: pure, for the SecretsFound condition.

Without its Secret the kubelet refuses to start the container (CreateContainerConfigError); the
operator says so first, naming the field to fix. Only the Secret's existence is checked (the
handler reads metadata only, never values), so a missing key inside an existing Secret still
surfaces through the kubelet (status.waiting_reason).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from llm_operator.api.models import LLMService
from llm_operator.engines import container_for
from llm_operator.resources.deployment import dedupe_env


@dataclass(frozen=True)
class SecretReference:
    """A required Secret key and the spec field that names it."""

    secret: str
    key: str
    field: str


def _required_refs(env: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(Secret, key) of each secretKeyRef the kubelet must resolve (`optional: true` ones it may skip)."""
    refs = set()
    for item in env:
        key_ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        if isinstance(key_ref, dict) and key_ref.get("name") and key_ref.get("optional") is not True:
            refs.add((key_ref["name"], key_ref.get("key", "")))
    return refs


def _pod_refs(service: LLMService) -> set[tuple[str, str]]:
    """What the engine Pod actually asks for, after our env and the user's are merged: ollama has no
    HF_TOKEN, and a user's env of the same name replaces ours."""
    engine = container_for(service)
    refs = _required_refs(dedupe_env(engine.env))
    for init in engine.init_containers:
        refs |= _required_refs(dedupe_env(init.get("env", [])))
    return refs


def engine_secret_references(service: LLMService) -> list[SecretReference]:
    """The spec fields whose Secret keys the engine Pods need, in spec order."""
    candidates = []
    if (token := service.spec.model.token_secret_ref) is not None:
        candidates.append(SecretReference(token.name, token.key, "spec.model.tokenSecretRef"))
    for index, env in enumerate(service.spec.serving.env):
        key_ref = (env.value_from or {}).get("secretKeyRef")
        if isinstance(key_ref, dict) and key_ref.get("name"):
            field = f"spec.serving.env[{index}].valueFrom.secretKeyRef (variable {env.name})"
            candidates.append(SecretReference(key_ref["name"], str(key_ref.get("key", "")), field))
    used = _pod_refs(service)
    return [ref for ref in candidates if (ref.secret, ref.key) in used]


def missing_engine_secrets(service: LLMService, existing_secret_names: Collection[str]) -> list[str]:
    """One message per reference whose Secret is not among `existing_secret_names`."""
    namespace = service.metadata.namespace or ""
    return [
        f'Secret "{ref.secret}" (key "{ref.key}"), referenced by {ref.field}, does not exist in namespace '
        f'"{namespace}": create it, or correct the reference'
        for ref in engine_secret_references(service)
        if ref.secret not in existing_secret_names
    ]
