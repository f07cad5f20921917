"""The watch cache of managed Deployments and Pods (llm_operator.controller.cache)."""

from __future__ import annotations

from typing import Any

import pytest

from llm_operator import kube
from llm_operator.controller import cache
from llm_operator.controller.cache import WatchCache

ENGINE = {"app.kubernetes.io/instance": "chat", "app.kubernetes.io/component": "engine"}


def obj(kind: str, name: str, labels: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "namespace": "ml", "labels": labels or {}},
            **fields}


def test_events_add_replace_and_delete() -> None:
    watched = WatchCache()
    watched.update(None, obj("Deployment", "chat", spec={"replicas": 1}))  # the initial listing
    watched.update("MODIFIED", obj("Deployment", "chat", spec={"replicas": 3}))
    assert watched.get("Deployment", "ml", "chat")["spec"]["replicas"] == 3
    watched.update("DELETED", obj("Deployment", "chat"))
    assert watched.get("Deployment", "ml", "chat") is None and len(watched) == 0


def test_select_matches_every_label_in_the_namespace() -> None:
    watched = WatchCache()
    watched.update("ADDED", obj("Pod", "chat-a", ENGINE))
    watched.update("ADDED", obj("Pod", "chat-router-a", {**ENGINE, "app.kubernetes.io/component": "router"}))
    watched.update("ADDED", obj("Pod", "other", {"app.kubernetes.io/instance": "other"}))
    assert [p["metadata"]["name"] for p in watched.select("Pod", "ml", ENGINE)] == ["chat-a"]
    assert watched.select("Pod", "elsewhere", ENGINE) == []


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(cache, "watched", WatchCache())
    monkeypatch.setattr(kube, "get", lambda *args: calls.append(("get", *args)) or None)
    monkeypatch.setattr(kube, "list_objects", lambda *args: calls.append(("list", *args)) or [])
    return calls


def test_reads_are_served_from_the_cache(reads: list[tuple[str, ...]]) -> None:
    deployment = obj("Deployment", "chat", status={"replicas": 1})
    cache.watched.update("ADDED", deployment)
    cache.watched.update("ADDED", obj("Pod", "chat-a", ENGINE))
    assert cache.deployment("ml", "chat") == deployment
    assert len(cache.pods("ml", ENGINE, deployment)) == 1
    assert reads == []


def test_what_the_cache_has_not_seen_is_read_from_the_apiserver(reads: list[tuple[str, ...]]) -> None:
    assert cache.deployment("ml", "chat") is None
    # A Deployment that says it has Pods while the cache holds none (a watch still listing): ask.
    cache.pods("ml", ENGINE, obj("Deployment", "chat", status={"replicas": 2}))
    # No Pods expected: trust the empty answer.
    cache.pods("ml", ENGINE, obj("Deployment", "chat", status={"replicas": 0}))
    assert reads == [("get", "apps/v1", "Deployment", "ml", "chat"),
                     ("list", "v1", "Pod", "ml", "app.kubernetes.io/instance=chat,app.kubernetes.io/component=engine")]
