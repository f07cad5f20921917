"""The periodic loop: one object's failure is logged, and an object that no longer exists is forgotten."""

from __future__ import annotations

import logging

import pytest

from llm_operator import kube
from llm_operator.controller import registry
from llm_operator.controller.loops import Loop


def body(name: str, uid: str) -> dict:
    return {"metadata": {"namespace": "team-a", "name": name, "uid": uid, "generation": 1}, "spec": {}}


@pytest.fixture
def known(monkeypatch: pytest.MonkeyPatch) -> dict:
    table: dict = {}
    monkeypatch.setattr(registry, "known", table)
    return table


def one_pass(loop: Loop) -> None:
    """Loop.run once: the stop event answers 'not yet' once, then 'stop'."""
    answers = iter([False, True])
    loop.stopped.wait = lambda _interval: next(answers)  # type: ignore[method-assign]
    loop.run()


def failing(_body: dict) -> None:
    raise RuntimeError("404 on the status patch")


def test_an_llmservice_gone_from_the_apiserver_is_forgotten(known, monkeypatch, caplog) -> None:
    known[("team-a", "gone")] = body("gone", "u-gone")
    known[("team-a", "here")] = body("here", "u-here")
    live = {"here": body("here", "u-here")}
    monkeypatch.setattr(kube, "get_llmservice", lambda _namespace, name: live.get(name))
    with caplog.at_level(logging.INFO, logger="llm_operator"):
        one_pass(Loop("resync", 1, failing, lambda _body: True))
    assert list(known) == [("team-a", "here")]
    assert "forgot team-a/gone: it was deleted" in caplog.text
    assert "resync of team-a/here" in caplog.text  # a failure of a live object is still an error


def test_one_recreated_under_the_same_name_is_a_different_object(known, monkeypatch) -> None:
    known[("team-a", "chat")] = body("chat", "u-old")
    monkeypatch.setattr(kube, "get_llmservice", lambda _namespace, _name: body("chat", "u-new"))

    def recreated_meanwhile(_body: dict) -> None:
        known[("team-a", "chat")] = body("chat", "u-new")  # the watch delivered the new object
        raise RuntimeError("404: the old uid's status")

    one_pass(Loop("resync", 1, recreated_meanwhile, lambda _body: True))
    assert known[("team-a", "chat")]["metadata"]["uid"] == "u-new"


def test_an_unreachable_apiserver_forgets_nothing(known, monkeypatch) -> None:
    known[("team-a", "chat")] = body("chat", "u-1")

    def unreachable(_namespace: str, _name: str) -> dict:
        raise ConnectionRefusedError

    monkeypatch.setattr(kube, "get_llmservice", unreachable)
    one_pass(Loop("resync", 1, failing, lambda _body: True))
    assert ("team-a", "chat") in known
