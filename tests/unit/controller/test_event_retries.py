"""kube.post_event against an apiserver that fails: a stand-in CoreV1Api, because a real apiserver cannot be
made to answer 504 or 403 on demand for one request."""

from __future__ import annotations

import logging

import pytest
import urllib3
from kubernetes import client

from llm_operator import kube

SERVICE = {"apiVersion": "serving.llm-operator.io/v1alpha1", "kind": "LLMService",
           "metadata": {"name": "chat", "namespace": "team-a", "uid": "u-1"}}


class FlakyEvents:
    """Fails with the given errors in order, then accepts; records every attempt."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = list(errors)
        self.attempts: list[dict] = []

    def __call__(self, _api_client=None) -> FlakyEvents:
        return self

    def create_namespaced_event(self, namespace: str, body: dict, _request_timeout: float) -> None:
        assert _request_timeout == kube.EVENT_REQUEST_TIMEOUT
        self.attempts.append(body)
        if self.errors:
            raise self.errors.pop(0)


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(kube, "EVENT_RETRY_DELAYS", (0.0, 0.0))
    monkeypatch.setattr(kube, "api_client", lambda: None)

    def install(errors: list[Exception]) -> FlakyEvents:
        fake = FlakyEvents(errors)
        monkeypatch.setattr(client, "CoreV1Api", fake)
        return fake
    return install


def test_a_gateway_timeout_and_a_dropped_connection_are_retried(events) -> None:
    fake = events([client.ApiException(status=504, reason="Gateway Timeout"),
                   urllib3.exceptions.ProtocolError("connection reset")])
    kube.post_event(SERVICE, "Normal", "Scaled", "scaled from 1 to 3 replicas")
    assert len(fake.attempts) == 3
    assert fake.attempts[-1]["message"] == "scaled from 1 to 3 replicas"


def test_an_event_still_failing_after_the_retries_is_logged_not_raised(events, caplog) -> None:
    fake = events([client.ApiException(status=503, reason="Service Unavailable")] * 5)
    with caplog.at_level(logging.WARNING):
        kube.post_event(SERVICE, "Normal", "Scaled", "scaled from 1 to 3 replicas")
    assert len(fake.attempts) == 1 + len(kube.EVENT_RETRY_DELAYS)
    assert "Event Scaled about team-a/chat not posted: HTTP 503 Service Unavailable" in caplog.text


def test_a_refusal_is_not_retried(events, caplog) -> None:
    fake = events([client.ApiException(status=403, reason="Forbidden")])
    with caplog.at_level(logging.WARNING):
        kube.post_event(SERVICE, "Warning", "Stalled", "spec.model.name: ...")
    assert len(fake.attempts) == 1
    assert "HTTP 403 Forbidden" in caplog.text
