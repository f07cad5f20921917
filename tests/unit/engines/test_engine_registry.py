"""The engine registry: every engine the API names has one complete descriptor, and what the rest of the
operator reads from it (service port, managed flags, router model, metrics, rules) is consistent."""

from __future__ import annotations

from typing import get_args

import pytest

from llm_operator.api.engine_rules import engine_rules, or_list
from llm_operator.api.models import Engine as EngineName
from llm_operator.api.models import LLMServiceSpec
from llm_operator.engines import ENGINES, engine_of
from llm_operator.engines.base import QUANTIZATION_METHODS, Capabilities, Engine, EngineMetrics
from llm_operator.naming import engine_url
from llm_operator.router.config import router_metrics_enabled, upstream_model
from unit.factories import make_service


def test_the_api_enum_is_the_registry() -> None:
    assert list(get_args(EngineName)) == list(ENGINES)


@pytest.mark.parametrize("name", ENGINES)
def test_descriptor_is_complete(name: str) -> None:
    engine = ENGINES[name]
    assert engine.name == name
    assert engine.image and ":" in engine.image and not engine.image.endswith(":latest")
    assert set(engine.capabilities.quantization) <= set(QUANTIZATION_METHODS)
    assert "none" in engine.capabilities.quantization


COMMON_FIELDS = ("model.name", "model.servedName", "model.revision", "model.tokenSecretRef", "quantization.method",
                 "serving.maxModelLen", "serving.tensorParallelSize", "serving.maxConcurrentRequests")


@pytest.mark.parametrize("name", ENGINES)
def test_every_engine_documents_how_it_applies_the_common_fields(name: str) -> None:
    """The CRD's field descriptions list each engine's flag; a new engine cannot leave a gap."""
    docs = ENGINES[name].field_docs
    assert set(COMMON_FIELDS) <= set(docs), set(COMMON_FIELDS) - set(docs)
    settings = {f"serving.{setting}" for setting in ENGINES[name].capabilities.settings}
    assert settings <= set(docs), settings - set(docs)
    assert set(docs) <= {*COMMON_FIELDS, "serving.maxInputTokens", "serving.gpuMemoryUtilization",
                         "serving.enablePrefixCaching", "serving.pipelineParallelSize"}


@pytest.mark.parametrize("name", ENGINES)
def test_every_managed_flag_that_the_builder_always_sets_is_refused_in_extra_args(name: str) -> None:
    service = make_service(name)
    container = engine_of(service).container(service)
    set_flags = {arg for arg in [*container.command, *container.args] if arg.startswith("--")}
    managed = set(ENGINES[name].managed_flags)
    # The flags the builder sets on every spec are managed (aliases like --model for --model-path are too).
    always = set_flags - {"--enable-metrics", "--enforce-eager"}
    assert always <= managed, always - managed


@pytest.mark.parametrize("name", ENGINES)
def test_router_and_service_use_the_descriptor(name: str) -> None:
    service = make_service(name, name="chat", namespace="ml")
    engine = ENGINES[name]
    assert engine_url(service) == f"http://chat.ml.svc:{engine.service_port}"
    assert upstream_model(service) == engine.upstream_model(service)
    # The router's in-flight gauge is needed exactly when the engine has no queue metric.
    assert router_metrics_enabled(service) == (not engine.metrics.waiting)


def fake_engine(name: str, capabilities: Capabilities) -> Engine:
    return Engine(name=name, title=name, image=f"{name}:1", service_port=1, container=lambda s: None,  # type: ignore[arg-type,return-value]
                  upstream_model=lambda s: name, managed_flags={}, metrics=EngineMetrics(), capabilities=capabilities)


def test_rules_follow_capabilities_and_name_the_engines_that_accept() -> None:
    full = fake_engine("full", Capabilities(settings=("gpuMemoryUtilization",), multi_node=True))
    small = fake_engine("small", Capabilities(quantization=("none", "gguf"), quantization_note="small is small",
                                              tensor_parallel=False))
    rules = {rule.field: rule for rule in engine_rules([full, small])}
    quantization = rules["quantization.method"]
    assert "self.engine != 'small'" in quantization.cel
    assert "an engine that loads {method}: {engines}" in quantization.message
    assert quantization.values["engines"].cel.startswith("{'awq': 'full', ")
    fields = sorted(rules)
    # Neither maps maxInputTokens, prefix caching or pipeline stages, so those are refused for both; only full
    # maps the memory share, and only full serves across nodes.
    assert fields == ["quantization.method", "resources.nodes", "serving.enablePrefixCaching",
                      "serving.gpuMemoryUtilization", "serving.maxInputTokens", "serving.pipelineParallelSize",
                      "serving.tensorParallelSize"]
    assert "self.engine != 'small'" in rules["resources.nodes"].cel
    assert rules["resources.nodes"].message.endswith("or use engine full to serve across nodes")
    assert rules["serving.maxInputTokens"].message.endswith("(serving.maxModelLen bounds prompt plus output)")


def test_the_spec_carries_the_generated_rules() -> None:
    generated = [rule.cel for rule in engine_rules(ENGINES.values())]
    assert [rule.cel for rule in LLMServiceSpec.rules][:len(generated)] == generated


@pytest.mark.parametrize(("names", "text"), [([], ""), (["a"], "a"), (["a", "b"], "a or b"),
                                              (["a", "b", "c"], "a, b or c")])
def test_or_list(names: list[str], text: str) -> None:
    assert or_list(names) == text
