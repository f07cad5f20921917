"""LiteLLM's config.yaml for an LLMService: the local engine, the router settings and the fallbacks."""

from __future__ import annotations

import pytest

from llm_operator.naming import engine_url
from llm_operator.router.config import (
    NO_API_KEY,
    litellm_config,
    missing_references,
)
from unit.factories import ENGINES, make_service

OTHER = {"other": make_service("vllm", {"model": {"servedName": "other-model"}}, name="other")}


def service_with(router: dict, engine: str = "vllm", **kwargs):
    return make_service(engine, {"router": router}, **kwargs)


@pytest.mark.parametrize("engine", ENGINES)
def test_local_engine_is_an_openai_deployment_under_the_served_name(engine: str) -> None:
    llm = make_service(engine, {"model": {"servedName": "chat"}}, name="llm", namespace="ml")
    config = litellm_config(llm, {})
    (local,) = config["model_list"]
    assert local["model_name"] == "chat"
    assert local["litellm_params"]["api_base"] == f"{engine_url(llm)}/v1"
    assert local["litellm_params"]["model"].startswith("openai/")
    assert local["litellm_params"]["api_key"] == NO_API_KEY
    # Every request a new connection, so the engine Service spreads requests over all replicas.
    assert local["litellm_params"]["extra_headers"] == {"Connection": "close"}


@pytest.mark.parametrize(("engine", "patch", "upstream"), [
    ("vllm", {"model": {"servedName": "chat"}}, "openai/chat"),
    ("vllm", {}, "openai/llm"),  # servedName defaults to metadata.name
    ("tgi", {"model": {"servedName": "chat"}}, "openai/tgi"),
    ("ollama", {"model": {"name": "qwen2.5:7b-instruct", "servedName": "chat"}}, "openai/qwen2.5:7b-instruct"),
    ("ollama", {"model": {"name": "qwen2.5"}, "quantization": {"method": "gguf", "variant": "Q4_K_M"}},
     "openai/qwen2.5:Q4_K_M"),
])
def test_upstream_model_is_what_the_engine_expects(engine: str, patch: dict, upstream: str) -> None:
    (local,) = litellm_config(make_service(engine, patch), {})["model_list"]
    assert local["litellm_params"]["model"] == upstream


def test_router_settings_are_mapped() -> None:
    llm = service_with({"routingStrategy": "latency-based-routing", "numRetries": 4, "timeoutSeconds": 42})
    settings = litellm_config(llm, {})["router_settings"]
    assert settings == {"routing_strategy": "latency-based-routing", "num_retries": 4, "timeout": 42}


def test_defaults_and_master_key_from_the_environment() -> None:
    config = litellm_config(make_service("vllm"), {})
    assert config["router_settings"] == {"routing_strategy": "least-busy", "num_retries": 2, "timeout": 600}
    assert config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert "fallbacks" not in config["router_settings"]


def test_fallbacks_in_spec_order() -> None:
    llm = make_service("vllm", {"model": {"servedName": "chat"}, "router": {"fallbacks": [
        {"model": "openai/gpt-4o", "apiKeySecretRef": {"name": "openai", "key": "api-key"}},
        {"llmService": "other"},
        {"model": "anthropic/claude-3-5-sonnet-latest", "apiBase": "https://proxy.example/v1"},
    ]}})
    config = litellm_config(llm, OTHER, existing_secrets={"openai"})
    names = [m["model_name"] for m in config["model_list"]]
    assert names == ["chat", "chat-fallback-1", "chat-fallback-2", "chat-fallback-3"]
    assert config["router_settings"]["fallbacks"] == [{"chat": ["chat-fallback-1", "chat-fallback-2",
                                                                "chat-fallback-3"]}]
    gpt, other, claude = (m["litellm_params"] for m in config["model_list"][1:])
    assert gpt == {"model": "openai/gpt-4o", "api_key": "os.environ/FALLBACK_1_API_KEY"}
    # Another LLMService: its engine Service, with the model name its engine expects.
    assert other == {"model": "openai/other-model", "api_base": "http://other.ml.svc:8000/v1", "api_key": NO_API_KEY,
                     "extra_headers": {"Connection": "close"}}
    # External APIs keep pooled (TLS) connections.
    assert "extra_headers" not in gpt and "extra_headers" not in claude
    assert claude == {"model": "anthropic/claude-3-5-sonnet-latest", "api_base": "https://proxy.example/v1"}
    assert missing_references(llm, OTHER, {"openai"}) == []


def test_missing_llmservice_is_left_out_and_reported() -> None:
    llm = make_service("vllm", {"model": {"servedName": "chat"}, "router": {"fallbacks": [
        {"llmService": "absent"}, {"llmService": "other"}]}})
    config = litellm_config(llm, OTHER)
    assert [m["model_name"] for m in config["model_list"]] == ["chat", "chat-fallback-2"]
    assert config["router_settings"]["fallbacks"] == [{"chat": ["chat-fallback-2"]}]
    assert missing_references(llm, OTHER) == ["LLMService absent"]


def test_missing_fallback_is_added_once_it_exists() -> None:
    llm = make_service("vllm", {"router": {"fallbacks": [{"llmService": "other"}]}})
    before = litellm_config(llm, {})
    after = litellm_config(llm, OTHER)
    assert len(before["model_list"]) == 1 and "fallbacks" not in before["router_settings"]
    assert len(after["model_list"]) == 2 and after["router_settings"]["fallbacks"]
    assert missing_references(llm, OTHER) == []


def test_llmservice_of_another_namespace_does_not_count() -> None:
    llm = make_service("vllm", {"router": {"fallbacks": [{"llmService": "other"}]}}, namespace="ml")
    elsewhere = {"other": make_service("vllm", name="other", namespace="team-b")}
    assert missing_references(llm, elsewhere) == ["LLMService other"]
    assert len(litellm_config(llm, elsewhere)["model_list"]) == 1


def test_missing_secret_is_left_out_and_reported() -> None:
    llm = make_service("vllm", {"router": {"fallbacks": [
        {"model": "openai/gpt-4o", "apiKeySecretRef": {"name": "openai", "key": "api-key"}},
        {"model": "openai/gpt-4o-mini", "apiKeySecretRef": {"name": "present", "key": "k"}},
    ]}})
    config = litellm_config(llm, {}, existing_secrets={"present"})
    assert [m["litellm_params"]["model"] for m in config["model_list"][1:]] == ["openai/gpt-4o-mini"]
    assert config["model_list"][1]["litellm_params"]["api_key"] == "os.environ/FALLBACK_2_API_KEY"
    assert missing_references(llm, {}, existing_secrets={"present"}) == ["Secret openai"]
    # Unknown Secrets (None): assume they exist, for offline rendering.
    assert missing_references(llm, {}) == []


def test_missing_master_key_secret_is_reported() -> None:
    llm = service_with({"masterKeySecretRef": {"name": "router-key", "key": "key"}})
    assert missing_references(llm, {}, existing_secrets=set()) == ["Secret router-key"]
    assert missing_references(llm, {}, existing_secrets={"router-key"}) == []


def test_every_api_key_is_an_environment_reference_or_the_placeholder() -> None:
    llm = make_service("vllm", {"router": {"fallbacks": [
        {"model": "openai/gpt-4o", "apiKeySecretRef": {"name": "openai", "key": "api-key"}},
        {"llmService": "other"},
    ]}})
    config = litellm_config(llm, OTHER, {"openai"})
    for deployment in config["model_list"]:
        key = deployment["litellm_params"].get("api_key")
        assert key is None or key == NO_API_KEY or key.startswith("os.environ/"), key
    assert config["general_settings"]["master_key"].startswith("os.environ/")


def test_config_is_deterministic() -> None:
    def build():
        llm = make_service("ollama", {"router": {"fallbacks": [{"llmService": "other"}, {"model": "openai/x"}]}})
        return litellm_config(llm, OTHER)

    assert build() == build()
    assert repr(build()) == repr(build())


def test_what_the_router_references_by_name() -> None:
    from llm_operator.router.config import falls_back_to, referenced_secrets, referenced_services

    llm = make_service("vllm", {"router": {
        "masterKeySecretRef": {"name": "team-key", "key": "k"},
        "fallbacks": [{"llmService": "b"},
                      {"model": "openai/gpt-4o", "apiKeySecretRef": {"name": "openai", "key": "k"}},
                      {"llmService": "c"}],
    }})
    assert referenced_services(llm) == ["b", "c"]
    assert referenced_secrets(llm) == {"team-key", "openai"}
    assert falls_back_to(llm, "c") and not falls_back_to(llm, "openai")
    assert referenced_services(make_service("vllm")) == [] and referenced_secrets(make_service("vllm")) == set()
