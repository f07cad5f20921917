"""reconcile with a fake `kube`: a missing engine Secret reaches status and one Warning Event."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from llm_operator import kube
from llm_operator.controller import cache, registry
from llm_operator.controller import reconcile as controller
from llm_operator.controller.state import States
from unit.factories import UID, manifest

TOKEN = {"model": {"tokenSecretRef": {"name": "hf-token", "key": "token"}}}


class FakeKube:
    """Just enough of llm_operator.kube for reconcile: Secrets by name, Events and status patches recorded."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.events: list[tuple[str, str, str]] = []
        self.status: dict[str, Any] = {}

    def exists_metadata_only(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        return kind == "Secret" and name in self.secrets

    def create_if_absent(self, obj: dict[str, Any]) -> bool:
        self.secrets.add(obj["metadata"]["name"])
        return True

    def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    def patch_llmservice_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.status = status


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    fake = FakeKube()
    for name in ("exists_metadata_only", "create_if_absent", "post_event", "patch_llmservice_status"):
        monkeypatch.setattr(kube, name, getattr(fake, name))
    monkeypatch.setattr(kube, "apply", lambda obj: obj)
    monkeypatch.setattr(kube, "get", lambda *args: None)
    monkeypatch.setattr(kube, "list_objects", lambda *args: [])
    monkeypatch.setattr(registry, "states", States())
    monkeypatch.setattr(cache, "_secrets_found", {})
    return fake


def reconcile(patch: dict[str, Any]) -> None:
    body = manifest("vllm", patch)
    body["metadata"].update(uid=UID, generation=1)
    controller.reconcile(body, logging.getLogger("test"))


def condition(fake: FakeKube, type_: str) -> dict[str, Any]:
    return next(c for c in fake.status["conditions"] if c["type"] == type_)


def test_missing_token_secret_is_reported_once_and_clears_when_created(
    fake: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    reconcile(TOKEN)
    reconcile(TOKEN)  # a resync: no second Event
    (event,) = fake.events
    assert event[:2] == ("Warning", "SecretNotFound")
    assert 'Secret "hf-token" (key "token"), referenced by spec.model.tokenSecretRef' in event[2]
    assert fake.status["phase"] == "Pending"
    assert (condition(fake, "Ready")["reason"], condition(fake, "SecretsFound")["status"]) == (
        "SecretNotFound", "False")

    fake.secrets.add("hf-token")
    reconcile(TOKEN)
    assert (condition(fake, "SecretsFound")["status"], condition(fake, "SecretsFound")["reason"]) == (
        "True", "AllFound")
    assert condition(fake, "Ready")["reason"] != "SecretNotFound"

    fake.secrets.discard("hf-token")  # deleted again: reported again once the found-TTL has passed
    reconcile(TOKEN)
    assert [e[1] for e in fake.events] == ["SecretNotFound"]  # still believed: no read for 5 minutes
    monkeypatch.setattr(cache, "SECRET_FOUND_TTL_S", 0.0)
    reconcile(TOKEN)
    assert [e[1] for e in fake.events] == ["SecretNotFound", "SecretNotFound"]


def test_no_secrets_found_condition_without_engine_secrets(fake: FakeKube) -> None:
    reconcile({})
    assert "SecretsFound" not in {c["type"] for c in fake.status["conditions"]}
    assert fake.events == []
