"""references: which Secrets the engine Pods need, and the messages for the missing ones."""

from __future__ import annotations

from typing import Any

import pytest

from llm_operator.references import SecretReference, engine_secret_references, missing_engine_secrets
from unit.factories import make_service

TOKEN = {"model": {"tokenSecretRef": {"name": "hf-token", "key": "token"}}}


def secret_env(name: str, secret: str, key: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, **extra}}}


def test_missing_token_secret_names_secret_key_field_namespace_and_fix() -> None:
    assert missing_engine_secrets(make_service("vllm", TOKEN), set()) == [
        'Secret "hf-token" (key "token"), referenced by spec.model.tokenSecretRef, does not exist in namespace '
        '"ml": create it, or correct the reference'
    ]


@pytest.mark.parametrize("engine", ["vllm", "tgi"])
def test_nothing_missing_when_the_secret_exists(engine: str) -> None:
    assert missing_engine_secrets(make_service(engine, TOKEN), {"hf-token"}) == []


def test_no_references_without_secrets() -> None:
    assert engine_secret_references(make_service("vllm")) == []


def test_serving_env_secret_refs_count_unless_optional() -> None:
    env = [
        {"name": "PLAIN", "value": "x"},
        secret_env("API_KEY", "api", "key"),
        secret_env("MAYBE", "optional-secret", "key", optional=True),
        secret_env("NOT_OPTIONAL", "explicit", "key", optional=False),
        {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
    ]
    service = make_service("vllm", {**TOKEN, "serving": {"env": env}})
    assert engine_secret_references(service) == [
        SecretReference("hf-token", "token", "spec.model.tokenSecretRef"),
        SecretReference("api", "key", "spec.serving.env[1].valueFrom.secretKeyRef (variable API_KEY)"),
        SecretReference("explicit", "key", "spec.serving.env[3].valueFrom.secretKeyRef (variable NOT_OPTIONAL)"),
    ]
    missing = missing_engine_secrets(service, {"hf-token", "explicit"})
    assert len(missing) == 1
    assert missing[0].startswith('Secret "api" (key "key"), referenced by spec.serving.env[1]')


def test_ollama_ignores_the_token_but_not_its_env() -> None:
    # ollama has no HF_TOKEN, so its Pod does not need that Secret; user env reaches the init container too.
    service = make_service("ollama", {**TOKEN, "serving": {"env": [secret_env("API_KEY", "api", "key")]}})
    assert [ref.secret for ref in engine_secret_references(service)] == ["api"]


def test_token_replaced_by_user_env_is_not_needed() -> None:
    service = make_service("vllm", {**TOKEN, "serving": {"env": [{"name": "HF_TOKEN", "value": "from-a-mount"}]}})
    assert missing_engine_secrets(service, set()) == []


def test_only_the_last_of_duplicate_env_names_counts() -> None:
    env = [secret_env("KEY", "first", "k"), secret_env("KEY", "second", "k")]
    service = make_service("vllm", {"serving": {"env": env}})
    assert [ref.secret for ref in engine_secret_references(service)] == ["second"]
