"""The CEL rules that follow from what each engine accepts, generated from the engine descriptors'
`Capabilities`: a new engine brings its own rules, and every message names the engines that do
accept the refused value."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from llm_operator.api.rules import Rule, Value
from llm_operator.engines.base import QUANTIZATION_METHODS, Engine

TENSOR_PARALLEL_SIZE = Value("self.serving.tensorParallelSize", lambda s: s.serving.tensor_parallel_size)
ENGINE = Value("self.engine", lambda s: s.engine)
NODES = Value("(has(self.resources) && has(self.resources.nodes) ? self.resources.nodes : 1)",
              lambda s: s.resources.nodes)
METHOD = Value("self.quantization.method", lambda s: s.quantization.method)


@dataclass(frozen=True)
class Setting:
    """An optional serving field that only some engines map to a flag."""

    label: str
    """How the message names the refused value."""
    unset_cel: str
    """CEL, true when the field asks nothing of the engine."""
    unset: Callable[[Any], bool]
    """Its Python twin, on the LLMServiceSpec."""
    hint: str = ""


SETTINGS = {
    "maxInputTokens": Setting(
        "serving.maxInputTokens", "!has(self.serving) || !has(self.serving.maxInputTokens)",
        lambda s: s.serving.max_input_tokens is None, " (serving.maxModelLen bounds prompt plus output)",
    ),
    "gpuMemoryUtilization": Setting(
        "serving.gpuMemoryUtilization", "!has(self.serving) || !has(self.serving.gpuMemoryUtilization)",
        lambda s: s.serving.gpu_memory_utilization is None,
    ),
    "pipelineParallelSize": Setting(
        "serving.pipelineParallelSize above 1",
        "!has(self.serving) || !has(self.serving.pipelineParallelSize) || self.serving.pipelineParallelSize <= 1",
        lambda s: (s.serving.pipeline_parallel_size or 1) <= 1,
    ),
    "enablePrefixCaching": Setting(
        "serving.enablePrefixCaching: true",
        "!has(self.serving) || !has(self.serving.enablePrefixCaching) || !self.serving.enablePrefixCaching",
        lambda s: not s.serving.enable_prefix_caching,
    ),
}


def engine_rules(engines: Iterable[Engine]) -> tuple[Rule, ...]:
    """The rules, on LLMServiceSpec, for every value some engine cannot take."""
    engines = list(engines)
    return (
        *(rule for engine in engines if (rule := quantization_rule(engine, engines))),
        *(rule for name in SETTINGS if (rule := setting_rule(name, engines))),
        *(tensor_parallel_rule(engine, engines) for engine in engines if not engine.capabilities.tensor_parallel),
        *(multi_node_rule(engine, engines) for engine in engines if not engine.capabilities.multi_node),
    )


def quantization_rule(engine: Engine, engines: list[Engine]) -> Rule | None:
    allowed = engine.capabilities.quantization
    refused = [method for method in QUANTIZATION_METHODS if method not in allowed]
    if not refused:
        return None
    # For each refused method, the engines that load it: a CEL map the message looks the method up in.
    loaders = {method: or_list(e.name for e in engines if method in e.capabilities.quantization) or "none"
               for method in refused}
    cel_map = "{" + ", ".join(f"'{method}': '{names}'" for method, names in loaders.items()) + "}"
    return Rule(
        field="quantization.method",
        cel=f"self.engine != '{engine.name}' || !has(self.quantization) "
        f"|| self.quantization.method in [{quoted(allowed)}]",
        valid=lambda s: s.engine != engine.name or s.quantization.method in allowed,
        message=f"{engine.capabilities.quantization_note}, so quantization.method {{method}} cannot be used with "
        f"engine {engine.name}: set {or_list(allowed)}, or use an engine that loads {{method}}: {{engines}}",
        values={"method": METHOD,
                "engines": Value(f"{cel_map}[self.quantization.method]", lambda s: loaders[s.quantization.method])},
        reason="FieldValueForbidden",
    )


def setting_rule(name: str, engines: list[Engine]) -> Rule | None:
    setting = SETTINGS[name]
    supported = [e.name for e in engines if name in e.capabilities.settings]
    if len(supported) == len(engines):
        return None
    return Rule(
        field=f"serving.{name}",
        cel=f"self.engine in [{quoted(supported)}] || {setting.unset_cel}",
        valid=lambda s: s.engine in supported or setting.unset(s),
        message=f"{setting.label} is not supported by engine {{engine}}: remove it{setting.hint}"
        + (f", or use engine {or_list(supported)}" if supported else ""),
        values={"engine": ENGINE},
        reason="FieldValueForbidden",
    )


def tensor_parallel_rule(engine: Engine, engines: list[Engine]) -> Rule:
    able = or_list(e.name for e in engines if e.capabilities.tensor_parallel)
    return Rule(
        field="serving.tensorParallelSize",
        cel=f"self.engine != '{engine.name}' || !has(self.serving) || !has(self.serving.tensorParallelSize) "
        "|| self.serving.tensorParallelSize <= 1",
        valid=lambda s: s.engine != engine.name or (s.serving.tensor_parallel_size or 1) <= 1,
        message=f"engine {engine.name} cannot split a model across GPUs, so serving.tensorParallelSize must be 1, "
        f"not {{size}}: remove it, or use engine {able} for tensor parallelism",
        values={"size": TENSOR_PARALLEL_SIZE},
        reason="FieldValueForbidden",
    )


def multi_node_rule(engine: Engine, engines: list[Engine]) -> Rule:
    able = or_list(e.name for e in engines if e.capabilities.multi_node)
    return Rule(
        field="resources.nodes",
        cel=f"self.engine != '{engine.name}' || {NODES.cel} <= 1",
        valid=lambda s: s.engine != engine.name or s.resources.nodes <= 1,
        message=f"engine {engine.name} serves a replica on one node, so resources.nodes must be 1, not {{nodes}}: "
        f"set resources.nodes: 1 (with more resources.gpus or a quantization.method if the model does not fit "
        f"one node), or use engine {able} to serve across nodes",
        values={"nodes": NODES},
        reason="FieldValueForbidden",
    )


def quoted(names: Iterable[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def or_list(names: Iterable[str]) -> str:
    """["a", "b", "c"] -> "a, b or c"."""
    names = list(names)
    return " or ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)
