"""The controller's parameter count for the fit check when spec.model.parameters is unset: read once from
the Hub (the stand-in Hub of tests/support/hub_standin.py: the real one cannot be reached from here), recorded
in status, retried after a failure only once RETRY_SECONDS have passed, with the model's token from its Secret."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from llm_operator import hub
from llm_operator.controller import model_size, registry
from llm_operator.fit import FitResult
from support.hub_standin import TOKEN, HubStandIn
from unit.factories import make_service

MAVERICK = "meta-llama/Llama-4-Maverick-17B-128E-Instruct"
GATED = "acme/gated-tiny-llama"
H100_NODE = {"gpus": 8, "gpuProduct": "NVIDIA-H100-80GB-HBM3"}


def body(status: dict | None = None) -> dict:
    return {"metadata": {"namespace": "ml", "name": "llm", "uid": "u1"}, "status": status or {}}


def service(**model: object):
    return make_service("vllm", {"model": {"name": MAVERICK, **model}, "resources": H100_NODE})


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    hub.clear_cache()
    registry.states.drop("u1")
    yield
    hub.clear_cache()
    registry.states.drop("u1")


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandIn]:
    with HubStandIn() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        yield server


def test_a_typed_count_asks_nothing(standin: HubStandIn) -> None:
    assert model_size.lookup(body(), service(parameters="402B")) == model_size.Lookup()
    assert standin.requests == []


def test_the_count_is_read_once_and_recorded(standin: HubStandIn) -> None:
    found = model_size.lookup(body(), service())
    assert found.parameters is not None and 4.0e11 < found.parameters < 4.05e11
    assert found.record is not None
    assert found.record["model"] == MAVERICK and found.record["revision"] == "main"
    assert found.record["parameters"] == int(found.parameters)
    asked = len(standin.requests)
    # The next reconcile reads the record in status, not the Hub.
    again = model_size.lookup(body({"modelSize": found.record}), service())
    assert (again.parameters, again.record) == (found.parameters, None)
    assert len(standin.requests) == asked


def test_a_record_of_another_revision_is_read_anew(standin: HubStandIn) -> None:
    record = {"model": MAVERICK, "revision": "main", "parameters": 1}
    assert model_size.recorded(body({"modelSize": record}), service()) == 1.0
    assert model_size.recorded(body({"modelSize": record}), service(revision="v2")) is None
    assert model_size.recorded(body({"modelSize": {**record, "model": "other/model"}}), service()) is None


def test_an_unreachable_hub_is_asked_again_only_after_the_retry_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    clock = [1000.0]
    monkeypatch.setattr(model_size.time, "monotonic", lambda: clock[0])
    calls = []
    real_fetch = hub.fetch_model_size
    monkeypatch.setattr(hub, "fetch_model_size", lambda *a, **k: calls.append(a) or real_fetch(*a, **k))
    first = model_size.lookup(body(), service())
    assert first.parameters is None and first.problem and "127.0.0.1:9" in first.problem
    clock[0] += model_size.RETRY_SECONDS - 1
    assert model_size.lookup(body(), service()).problem == first.problem
    assert len(calls) == 1
    clock[0] += 2
    model_size.lookup(body(), service())
    assert len(calls) == 2


def test_the_token_comes_from_the_models_secret_and_goes_nowhere_else(
    standin: HubStandIn, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = {"data": {"token": base64.b64encode(f"{TOKEN}\n".encode()).decode()}}
    monkeypatch.setattr(model_size.kube, "get",
                        lambda *args: secret if args[:4] == ("v1", "Secret", "ml", "hf") else None)
    gated = make_service("vllm", {"model": {"name": GATED, "tokenSecretRef": {"name": "hf", "key": "token"}},
                                  "resources": H100_NODE})
    found = model_size.lookup(body(), gated)
    assert found.parameters is not None, found.problem
    assert any(seen.headers.get("Authorization") == f"Bearer {TOKEN}" for seen in standin.requests)
    assert TOKEN not in repr(found) and TOKEN not in caplog.text


def test_a_gated_model_without_its_token_says_which_field_to_set(standin: HubStandIn) -> None:
    gated = make_service("vllm", {"model": {"name": GATED}, "resources": H100_NODE})
    found = model_size.lookup(body(), gated)
    assert found.parameters is None
    assert "tokenSecretRef" in (found.problem or "")


def test_unknown_fit_says_why_the_hub_gave_no_count() -> None:
    unknown = FitResult("Unknown", "NotChecked", "fit not checked: set spec.model.parameters to enable it")
    explained = model_size.explain_unknown(unknown, model_size.Lookup(problem="cannot reach the Hub at x: refused"))
    assert explained is not None and explained.reason == "ParametersUnknown"
    assert "cannot reach the Hub at x: refused" in explained.message and "spec.model.parameters" in explained.message
    fits = FitResult("True", "Fits", "ok")
    assert model_size.explain_unknown(fits, model_size.Lookup(problem="x")) is fits


def test_engines_and_specs_the_fit_check_cannot_use_a_count_for_ask_nothing(standin: HubStandIn) -> None:
    ollama = make_service("ollama", {"model": {"name": "llama3.1:8b"}, "resources": H100_NODE})
    no_memory = make_service("vllm", {"model": {"name": MAVERICK}, "resources": {"gpus": 8}})
    cpu = make_service("vllm", {"model": {"name": MAVERICK}, "resources": {"gpus": 0}})
    for spec in (ollama, no_memory, cpu):
        assert model_size.lookup(body(), spec) == model_size.Lookup()
    assert standin.requests == []


def test_hf_hub_offline_asks_nothing(standin: HubStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    found = model_size.lookup(body(), service())
    assert found.parameters is None and "HF_HUB_OFFLINE" in (found.problem or "")
    assert standin.requests == []
