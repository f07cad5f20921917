"""Every container the operator builds asks the kubelet for its log tail on failure, which status quotes."""

from __future__ import annotations

import pytest

from llm_operator.resources import build_deployment
from llm_operator.router.objects import build_router_deployment, render_config
from unit.factories import ENGINES, UID, make_service


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_and_init_containers_fall_back_to_logs_on_error(engine: str) -> None:
    spec = build_deployment(make_service(engine), UID)["spec"]["template"]["spec"]
    containers = [*spec.get("initContainers", []), *spec["containers"]]
    assert len(containers) == (2 if engine == "ollama" else 1)
    assert all(c["terminationMessagePolicy"] == "FallbackToLogsOnError" for c in containers)


def test_router_container_falls_back_to_logs_on_error() -> None:
    service = make_service("vllm")
    deployment = build_router_deployment(service, UID, render_config(service, {}))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
