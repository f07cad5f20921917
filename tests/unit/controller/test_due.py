"""The children's events coalesced per owner (controller/due.py), and what `settle` makes of them with a
fake `kube`: a hand edit or a deleted child re-applies the plan, an echo of our own apply or a Pod's
progress only refreshes status, and a child of a deleted or re-created owner changes nothing."""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
from typing import Any

import pytest

from llm_operator import GROUP, VERSION, handlers, kube
from llm_operator.controller import cache, reconcile, registry
from llm_operator.controller.due import DueQueue, Workers
from unit.controller.test_recreate import applied, llmservice  # noqa: F401  (the fixture)

LOG = logging.getLogger("test")
OWNER = ("default", "chat")


def deployment(replicas: int = 1, ready: int = 0) -> dict[str, Any]:
    return {"kind": "Deployment", "metadata": {"name": "chat", "namespace": "default", "managedFields": [{}] * 3},
            "spec": {"replicas": replicas}, "status": {"readyReplicas": ready}}


def test_many_events_of_one_owner_make_one_entry_with_the_strongest_need() -> None:
    queue = DueQueue()
    for ready in range(50):
        queue.mark(OWNER, "uid", child=deployment(ready=ready), refresh=True)
    queue.mark(OWNER, "uid", reapply=True)
    queue.mark(("default", "other"), refresh=True)
    assert len(queue) == 2
    first = queue.take(timeout=0)
    assert first is not None and first.owner == OWNER and first.reapply and first.refresh
    # The latest body of each child, without what the comparison never reads.
    assert list(first.compare) == [("Deployment", "chat")]
    assert "status" not in first.compare[("Deployment", "chat")]
    assert "managedFields" not in first.compare[("Deployment", "chat")]["metadata"]


def test_an_owner_being_worked_on_is_not_handed_out_twice() -> None:
    queue = DueQueue()
    queue.mark(OWNER, refresh=True)
    taken = queue.take(timeout=0)
    assert taken is not None
    queue.mark(OWNER, refresh=True)  # a new event while a worker holds it
    assert queue.take(timeout=0.05) is None
    queue.done(OWNER)
    again = queue.take(timeout=0)
    assert again is not None and again.owner == OWNER


def test_workers_do_every_entry_and_survive_a_failing_one() -> None:
    queue, seen, finished = DueQueue(), [], threading.Event()

    def work(entry: Any) -> None:
        seen.append(entry.owner)
        if entry.owner[1] == "bad":
            raise RuntimeError("boom")
        if len(seen) == 3:
            finished.set()

    workers = Workers(queue, work, count=2)
    workers.start()
    for name in ("a", "bad", "b"):
        queue.mark(("default", name), refresh=True)
    assert finished.wait(5)
    workers.stopped.set()
    assert sorted(seen) == [("default", "a"), ("default", "b"), ("default", "bad")]


@pytest.fixture
def known(applied: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:  # noqa: F811
    body = llmservice("uid")
    monkeypatch.setattr(registry, "known", {OWNER: body})
    monkeypatch.setattr(kube, "get_llmservice", lambda namespace, name: None)
    reconcile.reconcile(body, LOG)
    applied.clear()
    return body


def applied_deployment(body: dict[str, Any]) -> dict[str, Any]:
    state = registry.states.get(body["metadata"]["uid"])
    assert state is not None and state.last_applied is not None
    [live] = [o for o in state.last_applied.objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "chat"]
    return copy.deepcopy(live)


def settle(**marks: Any) -> None:
    queue = DueQueue()
    queue.mark(OWNER, **marks)
    entry = queue.take(timeout=0)
    assert entry is not None
    reconcile.settle(entry, LOG)


def test_a_hand_edited_child_is_re_applied(known: dict[str, Any], applied: list[dict[str, Any]]) -> None:  # noqa: F811
    edited = applied_deployment(known)
    edited["spec"]["replicas"] = 5
    settle(uid="uid", child=edited)
    assert any(o["kind"] == "Deployment" for o in applied)


def test_the_echo_of_our_own_apply_only_refreshes_status(known: dict[str, Any], applied: list[dict[str, Any]]) -> None:  # noqa: F811
    echo = applied_deployment(known)
    echo["status"] = {"readyReplicas": 1}
    settle(uid="uid", child=echo, refresh=True)
    assert applied == []


def test_a_deleted_child_is_re_applied(known: dict[str, Any], applied: list[dict[str, Any]]) -> None:  # noqa: F811
    settle(uid="uid", reapply=True)
    assert applied


def test_children_of_a_re_created_or_deleted_owner_change_nothing(
    known: dict[str, Any], applied: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    settle(uid="another-uid", reapply=True)  # the owner was deleted and created again: not its child
    assert applied == []
    known["metadata"]["deletionTimestamp"] = "2026-11-30T00:00:00Z"
    settle(uid="uid", reapply=True)
    assert applied == []


def test_handlers_mark_the_owner_and_return(monkeypatch: pytest.MonkeyPatch) -> None:
    queue = DueQueue()
    monkeypatch.setattr(registry, "due", queue)
    monkeypatch.setattr(cache, "watched", cache.WatchCache())
    child = deployment()
    child["metadata"]["ownerReferences"] = [
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMService", "name": "chat", "uid": "u", "controller": True}
    ]
    asyncio.run(handlers.on_child_event(event={"type": "DELETED", "object": child}, body=child))
    pod = {"kind": "Pod", "metadata": {"name": "chat-x", "namespace": "default",
                                      "labels": {"app.kubernetes.io/instance": "chat"}}}
    asyncio.run(handlers.on_pod_event(event={"type": "MODIFIED", "object": pod}, body=pod))
    entry = queue.take(timeout=0)
    assert entry is not None and entry.owner == OWNER and entry.uid == "u" and entry.reapply and entry.refresh
    assert len(queue) == 0
