"""reconcile with a fake `kube`: an LLMService deleted and created again under the same name starts
afresh. (Before the per-uid state, the autoscaler's count was kept by namespace/name: the new object's
Deployment came up at the deleted one's 8 replicas, holding 8 GPUs until the scale-down delay.)"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from llm_operator import handlers, kube
from llm_operator.controller import autoscaling, reconcile, registry
from llm_operator.controller.state import States
from unit.controller.test_reconcile_secrets import FakeKube
from unit.factories import manifest

LOG = logging.getLogger("test")
AUTOSCALED = {"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 8}}


@pytest.fixture
def applied(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    fake, objects = FakeKube(), []
    for name in ("exists_metadata_only", "create_if_absent", "post_event", "patch_llmservice_status"):
        monkeypatch.setattr(kube, name, getattr(fake, name))
    monkeypatch.setattr(kube, "apply", lambda obj: objects.append(obj) or obj)
    monkeypatch.setattr(kube, "get", lambda *args: None)
    monkeypatch.setattr(kube, "list_objects", lambda *args: [])
    monkeypatch.setattr(registry, "states", States())
    return objects


def llmservice(uid: str) -> dict[str, Any]:
    body = manifest("vllm", AUTOSCALED, name="chat")
    body["metadata"].update(uid=uid, generation=1)
    return body


def engine_replicas(objects: list[dict[str, Any]]) -> int:
    [deployment] = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "chat"]
    return deployment["spec"]["replicas"]


def test_recreated_llmservice_does_not_inherit_the_deleted_ones_replicas(applied: list[dict[str, Any]]) -> None:
    old = llmservice("uid-old")
    reconcile.reconcile(old, LOG)
    autoscaling._scale(old, registry.states.of("uid-old"), 1, 8, "queue depth 40 > target 5 x 1 replicas", LOG)
    applied.clear()
    reconcile.reconcile(old, LOG)
    assert engine_replicas(applied) == 8

    namespace = old["metadata"]["namespace"]
    asyncio.run(handlers.track(event={"type": "DELETED"}, body=old, namespace=namespace, name="chat"))
    assert registry.states.get("uid-old") is None

    applied.clear()
    reconcile.reconcile(llmservice("uid-new"), LOG)
    assert engine_replicas(applied) == 1


def test_a_lazy_reconcile_with_nothing_changed_applies_nothing(applied: list[dict[str, Any]]) -> None:
    body = llmservice("uid")
    reconcile.reconcile(body, LOG)
    assert applied
    applied.clear()
    reconcile.reconcile(body, LOG, lazy=True)  # what an autoscaling tick that decided nothing does
    assert applied == []
    autoscaling._scale(body, registry.states.of("uid"), 1, 2, "queue", LOG)
    reconcile.reconcile(body, LOG, lazy=True)
    assert engine_replicas(applied) == 2


def test_a_status_refresh_applies_a_plan_that_changed_before_reporting_it(applied: list[dict[str, Any]]) -> None:
    """A child's event (apply=False) that finds the plan changed (here: a new replica count) applies it
    first, so status never reports what is not applied yet."""
    body = llmservice("uid")
    reconcile.reconcile(body, LOG)
    applied.clear()
    reconcile.reconcile(body, LOG, apply=False)
    assert applied == []  # nothing new: a pure status refresh
    registry.states.of("uid").replicas = 3
    reconcile.reconcile(body, LOG, apply=False)
    assert engine_replicas(applied) == 3
