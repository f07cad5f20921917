"""One module per engine; `container_for` picks the one a spec names."""

from __future__ import annotations

from collections.abc import Callable

from llm_operator.api.models import LLMService
from llm_operator.engines import ollama, tgi, vllm
from llm_operator.engines.base import EngineContainer

BUILDERS: dict[str, Callable[[LLMService], EngineContainer]] = {
    "vllm": vllm.container,
    "tgi": tgi.container,
    "ollama": ollama.container,
}
SERVICE_PORTS = {"vllm": vllm.PORT, "tgi": tgi.SERVICE_PORT, "ollama": ollama.PORT}


# Flags the operator sets from the spec; passing them again in extraArgs would contradict
# the spec (two --port values, a served name the router does not know), so it is refused.
MANAGED_FLAGS: dict[str, tuple[str, ...]] = {
    "vllm": ("--model", "--served-model-name", "--host", "--port", "--tensor-parallel-size", "--quantization"),
    "tgi": ("--model-id", "--hostname", "--port", "--num-shard", "--quantize"),
    "ollama": (),
}
FLAG_FIELDS = {
    "--served-model-name": "model.servedName", "--model": "model.name", "--model-id": "model.name",
    "--tensor-parallel-size": "serving.tensorParallelSize", "--num-shard": "serving.tensorParallelSize",
    "--quantization": "quantization.method", "--quantize": "quantization.method",
}


def container_for(service: LLMService) -> EngineContainer:
    return BUILDERS[service.spec.engine](service)


def engine_problems(service: LLMService) -> list[str]:
    """What the CRD cannot check because it needs to know the engines."""
    spec = service.spec
    problems = []
    for arg in spec.serving.extra_args:
        flag = arg.split("=", 1)[0]
        if flag in MANAGED_FLAGS[spec.engine]:
            field = FLAG_FIELDS.get(flag)
            fix = f"set spec.{field} instead" if field else "the operator sets it; remove it"
            problems.append(f"spec.serving.extraArgs: {flag} is managed by the operator for {spec.engine}: {fix}")
    if spec.engine == "vllm" and spec.quantization.method == "gguf" and not spec.model.name.endswith(".gguf"):
        problems.append(
            f"spec.model.name: vLLM loads GGUF from a single .gguf file, not {spec.model.name!r}: "
            "name a .gguf file (a path on the model cache or a URL), or use engine ollama"
        )
    return problems


__all__ = ["SERVICE_PORTS", "EngineContainer", "container_for", "engine_problems"]
