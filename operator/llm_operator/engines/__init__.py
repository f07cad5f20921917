"""The engine registry: one `Engine` descriptor per inference server, each from its own module.

Adding an engine is a module here (its container builder, ports, managed flags, router model name,
metrics and capabilities in one `ENGINE`), its line in ENGINES, and its value in the API's `Engine`
enum (a unit test keeps the two equal).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llm_operator.engines import ollama, sglang, tgi, vllm
from llm_operator.engines.base import Capabilities, Engine, EngineContainer, EngineMetrics

if TYPE_CHECKING:
    from llm_operator.api.models import LLMService

ENGINES: dict[str, Engine] = {engine.name: engine for engine in (vllm.ENGINE, tgi.ENGINE, ollama.ENGINE, sglang.ENGINE)}


def engine_of(service: LLMService) -> Engine:
    return ENGINES[service.spec.engine]


def container_for(service: LLMService) -> EngineContainer:
    return engine_of(service).container(service)


def engine_problems(service: LLMService) -> list[str]:
    """What the CRD cannot check because it needs to know the engines."""
    engine = engine_of(service)
    problems = []
    for arg in service.spec.serving.extra_args:
        flag = arg.split("=", 1)[0]
        if flag in engine.managed_flags:
            field = engine.managed_flags[flag]
            fix = f"set spec.{field} instead" if field else "the operator sets it; remove it"
            problems.append(f"spec.serving.extraArgs: {flag} is managed by the operator for {engine.name}: {fix}")
    return problems + engine.problems(service)


__all__ = ["ENGINES", "Capabilities", "Engine", "EngineContainer", "EngineMetrics", "container_for", "engine_of",
           "engine_problems"]
