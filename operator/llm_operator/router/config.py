"""LiteLLM's `config.yaml` for one LLMService, as a pure function of the spec and what exists.

The local engine is one OpenAI-compatible deployment under `model_name = servedName`. vLLM, TGI and
Ollama all serve the OpenAI API under `/v1`, so every engine is an `openai/<upstream model>` deployment
with `api_base: <engine Service>/v1`; only the model name the engine expects differs (vLLM: the served
name; TGI: ignored, "tgi" by convention; Ollama: the pulled tag). Requests to engines carry
`Connection: close`, so the Service spreads every request over the ready replicas (see
PER_REQUEST_CONNECTION).

Fallbacks, in spec order, are their own model groups named `<servedName>-fallback-<n>` (n = 1-based
position in spec.router.fallbacks, so names stay put when an earlier fallback is missing), listed in
`router_settings.fallbacks: [{<servedName>: [...]}]`.

- `llmService` fallbacks point at the other LLMService's ENGINE Service, not its router: one hop less, no
  second master key to hand over, and no fallback loops (A's router falls back to B's engine, never to B's
  router and thus never back to A). This router's own retries, timeout and fallback order apply.
- `model` fallbacks are the LiteLLM model string with the optional `api_base`, and
  `api_key: os.environ/FALLBACK_<n>_API_KEY`, an environment variable the Deployment fills from the
  Secret with a secretKeyRef.

No secret value ever appears here: the master key is `os.environ/LITELLM_MASTER_KEY`, API keys are
`os.environ/...` references, and local engines need no key (a fixed placeholder, `NO_API_KEY`, because
the OpenAI client refuses an empty one).

A fallback whose LLMService or Secret does not exist (yet) is left out, so the router keeps serving the
local model; `missing_references` names it for the RouterReady condition, and the next reconcile after it
appears adds it (the config checksum changes, so the router rolls out).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from llm_operator.api.models import Fallback, LLMService, served_name
from llm_operator.engines import engine_of
from llm_operator.naming import engine_url

MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
# Local engines run without authentication; the OpenAI client still insists on some key.
NO_API_KEY = "no-key-needed"
ENV_PREFIX = "os.environ/"


def fallback_model_name(service: LLMService, index: int) -> str:
    """The model group of the fallback at 0-based `index` of spec.router.fallbacks."""
    return f"{served_name(service)}-fallback-{index + 1}"


def fallback_key_env(index: int) -> str:
    """The environment variable holding the API key of the fallback at 0-based `index`."""
    return f"FALLBACK_{index + 1}_API_KEY"


def engine_base_url(service: LLMService) -> str:
    """The engine Service's OpenAI base URL."""
    return f"{engine_url(service)}/v1"


def upstream_model(service: LLMService) -> str:
    """The `model` the engine itself expects in an OpenAI request."""
    return engine_of(service).upstream_model(service)


# One TCP connection per request to an in-cluster engine. The engine Service balances connections,
# not requests, and the router's pool keeps its connections alive while traffic flows: without this,
# a replica the autoscaler adds gets no traffic from a busy router. A connection costs well under a
# millisecond in the cluster; a generation costs far more. External fallbacks keep their pooled TLS connections.
PER_REQUEST_CONNECTION = {"Connection": "close"}


def engine_deployment(service: LLMService, model_name: str) -> dict[str, Any]:
    """An OpenAI-compatible deployment of `service`'s engine Service under `model_name`."""
    return {
        "model_name": model_name,
        "litellm_params": {
            "model": f"openai/{upstream_model(service)}",
            "api_base": engine_base_url(service),
            "api_key": NO_API_KEY,
            "extra_headers": dict(PER_REQUEST_CONNECTION),
        },
    }


@dataclass(frozen=True)
class _Resolved:
    index: int
    fallback: Fallback
    target: LLMService | None  # the other LLMService, for llmService fallbacks
    missing: str | None  # what is missing, e.g. "LLMService llama3-8b" or "Secret openai"


def _resolve(
    service: LLMService,
    fallback_services: Mapping[str, LLMService],
    existing_secrets: Collection[str] | None,
) -> list[_Resolved]:
    namespace = service.metadata.namespace
    result = []
    for index, fallback in enumerate(service.spec.router.fallbacks):
        target, missing = None, None
        if fallback.llm_service is not None:
            target = fallback_services.get(fallback.llm_service)
            if target is not None and target.metadata.namespace not in (None, namespace):
                target = None  # only the LLMService's own namespace counts
            if target is None:
                missing = f"LLMService {fallback.llm_service}"
        elif (
            fallback.api_key_secret_ref is not None
            and existing_secrets is not None
            and fallback.api_key_secret_ref.name not in existing_secrets
        ):
            missing = f"Secret {fallback.api_key_secret_ref.name}"
        result.append(_Resolved(index, fallback, target, missing))
    return result


def referenced_services(service: LLMService) -> list[str]:
    """The LLMServices (same namespace) that spec.router.fallbacks names, in order."""
    return [f.llm_service for f in service.spec.router.fallbacks if f.llm_service]


def referenced_secrets(service: LLMService) -> set[str]:
    """The Secrets the router references by name: its own master key, and the fallbacks' API keys."""
    router = service.spec.router
    refs = [router.master_key_secret_ref, *(f.api_key_secret_ref for f in router.fallbacks)]
    return {ref.name for ref in refs if ref is not None}


def falls_back_to(service: LLMService, name: str) -> bool:
    """Whether `service`'s router falls back to the LLMService `name` (so it must hear of it at once)."""
    return name in referenced_services(service)


def missing_references(
    service: LLMService,
    fallback_services: Mapping[str, LLMService],
    existing_secrets: Collection[str] | None = None,
) -> list[str]:
    """What the router needs but cannot find, in spec order: "LLMService <name>" for a fallback to an
    LLMService that does not exist in the namespace, "Secret <name>" for a Secret that does not exist
    (a fallback's API key, or a referenced master key). `existing_secrets` None: assume all exist."""
    missing = [r.missing for r in _resolve(service, fallback_services, existing_secrets) if r.missing]
    ref = service.spec.router.master_key_secret_ref
    if ref is not None and existing_secrets is not None and ref.name not in existing_secrets:
        missing.append(f"Secret {ref.name}")
    return list(dict.fromkeys(missing))


def included_key_envs(
    service: LLMService,
    fallback_services: Mapping[str, LLMService],
    existing_secrets: Collection[str] | None = None,
) -> list[tuple[str, Any]]:
    """(env name, SecretKeyRef) of the API keys of the fallbacks in the config, for the Deployment."""
    return [
        (fallback_key_env(r.index), r.fallback.api_key_secret_ref)
        for r in _resolve(service, fallback_services, existing_secrets)
        if r.missing is None and r.fallback.model is not None and r.fallback.api_key_secret_ref is not None
    ]


def router_metrics_enabled(service: LLMService) -> bool:
    """Whether the autoscaler needs the router's in-flight gauge: as the queue of an engine without
    metrics (Ollama), or to see the first request while the engine is scaled to zero. Only then is
    LiteLLM's Prometheus callback on: it costs about a quarter of the router's throughput
    (bench/results/router_overhead.md)."""
    scaling = service.spec.autoscaling
    return not engine_of(service).metrics.waiting or (scaling.enabled and scaling.min_replicas == 0)


def _metrics_settings(service: LLMService) -> dict[str, Any]:
    if not router_metrics_enabled(service):
        return {}
    # /metrics with the queue signal (see llm_operator.router). Prometheus scrapes it without the master
    # key (the default asks for it); it holds counts and model names, no secrets.
    return {"callbacks": ["prometheus"], "require_auth_for_metrics_endpoint": False}


def litellm_config(
    service: LLMService,
    fallback_services: Mapping[str, LLMService],
    existing_secrets: Collection[str] | None = None,
) -> dict[str, Any]:
    """LiteLLM's config.yaml as a dict. `fallback_services`: the LLMServices of this namespace by name
    (at least those that spec.router.fallbacks names); `existing_secrets`: names of the Secrets that
    exist in the namespace (None: assume every referenced one does)."""
    router = service.spec.router
    name = served_name(service)
    model_list = [engine_deployment(service, name)]
    fallback_names = []
    for resolved in _resolve(service, fallback_services, existing_secrets):
        if resolved.missing is not None:
            continue
        group = fallback_model_name(service, resolved.index)
        fallback = resolved.fallback
        if resolved.target is not None:
            model_list.append(engine_deployment(resolved.target, group))
        else:
            params: dict[str, Any] = {"model": fallback.model}
            if fallback.api_base:
                params["api_base"] = fallback.api_base
            if fallback.api_key_secret_ref is not None:
                params["api_key"] = ENV_PREFIX + fallback_key_env(resolved.index)
            model_list.append({"model_name": group, "litellm_params": params})
        fallback_names.append(group)

    router_settings: dict[str, Any] = {
        "routing_strategy": router.routing_strategy,
        "num_retries": router.num_retries,
        "timeout": router.timeout_seconds,
    }
    if fallback_names:
        router_settings["fallbacks"] = [{name: fallback_names}]
    return {
        "model_list": model_list,
        "router_settings": router_settings,
        "litellm_settings": {
            **_metrics_settings(service),
            # Request and response bodies stay out of logs and callbacks.
            "turn_off_message_logging": True,
            "json_logs": True,
        },
        "general_settings": {
            "master_key": ENV_PREFIX + MASTER_KEY_ENV,
            # No database: keys other than the master key, spend logs and the UI's state are off.
            "disable_spend_logs": True,
        },
    }
