"""Every container the operator builds asks the kubelet for its log tail on failure, which status quotes."""

from __future__ import annotations

import pytest

from llm_operator.resources import build_deployment
from llm_operator.resources.router import build_router_deployment
from unit.factories import ENGINES, UID, make_service


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_and_init_containers_fall_back_to_logs_on_error(engine: str) -> None:
    spec = build_deployment(make_service(engine), UID)["spec"]["template"]["spec"]
    containers = [*spec.get("initContainers", []), *spec["containers"]]
    assert len(containers) == (2 if engine == "ollama" else 1)
    assert all(c["terminationMessagePolicy"] == "FallbackToLogsOnError" for c in containers)


def test_router_container_falls_back_to_logs_on_error() -> None:
    (container,) = build_router_deployment(make_service("vllm"), UID, {})["spec"]["template"]["spec"]["containers"]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
