"""The operator's decision for one LLMService, without a cluster: is the spec acceptable,
does the model fit, and which objects express it. `render` and the handlers both call it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from llm_operator.api.models import LLMService, LLMServiceSpec, effective_tensor_parallel_size
from llm_operator.api.quantity import quantity_bytes
from llm_operator.api.validation import validate_documents
from llm_operator.defaults import NO_DEFAULTS, OperatorDefaults, apply_defaults
from llm_operator.engines import ENGINES, engine_problems
from llm_operator.engines.base import effective_pipeline_parallel_size, multi_node
from llm_operator.fit import FitInput, FitResult, check_fit
from llm_operator.naming import engine_url
from llm_operator.resources import build_deployment, build_leader_worker_set, build_pvc, build_service
from llm_operator.resources.common import SKIP_FIT_CHECK_ANNOTATION
from llm_operator.router.objects import router_endpoint, router_objects


@dataclass(frozen=True)
class Plan:
    service: LLMService | None
    problems: list[str] = field(default_factory=list)
    fit: FitResult | None = None
    objects: list[dict[str, Any]] = field(default_factory=list)

    @property
    def deploy(self) -> bool:
        return bool(self.objects)

    @property
    def digest(self) -> str:
        """A fingerprint of the desired objects: equal digests, nothing new to apply."""
        return hashlib.sha256(json.dumps(self.objects, sort_keys=True).encode()).hexdigest()


def desired_objects(
    service: LLMService,
    uid: str | None,
    autoscaled_replicas: int | None = None,
    fallback_services: Mapping[str, LLMService] | None = None,
    existing_secrets: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """The engine's children: the cache claim first (the Pods mount it), then Service and Deployment;
    then, when spec.router.enabled, the router's ConfigMap, Service and Deployment.

    `fallback_services` (the namespace's LLMServices by name) and `existing_secrets` (names of the
    Secrets that exist) decide which fallbacks the router config includes; see router.config. The
    generated master-key Secret is not listed: it is created once, apart (build_router_secret)."""
    objects: list[dict[str, Any]] = []
    pvc = build_pvc(service, uid)
    if pvc is not None:
        objects.append(pvc)
    objects.append(build_service(service, uid))
    objects.append(build_workload(service, uid, autoscaled_replicas))
    objects.extend(router_objects(service, uid, fallback_services or {}, existing_secrets))
    return objects


def build_workload(service: LLMService, uid: str | None, autoscaled_replicas: int | None) -> dict[str, Any]:
    """The engine's Pods: a Deployment, or a LeaderWorkerSet when one replica spans several nodes."""
    if multi_node(service.spec):
        return build_leader_worker_set(service, uid, autoscaled_replicas)
    return build_deployment(service, uid, autoscaled_replicas)


def fit_input(spec: LLMServiceSpec, parameters: float | None = None) -> FitInput:
    """`parameters`: a count read elsewhere (the Hub), used when spec.model.parameters is unset."""
    resources = spec.resources
    typed = spec.model.parameter_count()
    engine = ENGINES[spec.engine]
    method, variant = spec.quantization.method, spec.quantization.variant
    if engine.weights_for_fit:
        method, variant = engine.weights_for_fit(spec)
    return FitInput(
        parameters=typed if typed is not None else parameters,
        method=method,
        bits=spec.quantization.bits,
        variant=variant,
        # Weights are sharded over tensor x pipeline parallel GPUs; GPUs beyond those hold no weights.
        gpus=min(resources.gpus * resources.nodes,
                 effective_tensor_parallel_size(spec) * effective_pipeline_parallel_size(spec))
        if resources.gpus else 0,
        gpu_memory_bytes=quantity_bytes(resources.gpu_memory) if resources.gpu_memory else None,
        gpu_product=resources.gpu_product,
        memory_utilization=spec.serving.gpu_memory_utilization or engine.capabilities.default_memory_utilization,
        methods=engine.capabilities.quantization,
        nodes=resources.nodes,
        pod_gpus=resources.gpus,
        multi_node=engine.capabilities.multi_node,
    )


def endpoint(service: LLMService) -> str:
    """status.endpoint: the router when it is enabled, else the engine Service."""
    if service.spec.router.enabled:
        return router_endpoint(service)
    return f"{engine_url(service)}/v1"


def parse(body: dict[str, Any]) -> tuple[LLMService | None, list[str]]:
    """The LLMService model of `body` (as the apiserver returns it; status is ignored), or None and what
    is wrong with it, each problem naming its field."""
    manifest = {key: body[key] for key in ("apiVersion", "kind", "metadata", "spec") if key in body}
    manifest["metadata"] = {
        key: body.get("metadata", {}).get(key)
        for key in ("name", "namespace", "labels", "annotations")
        if body.get("metadata", {}).get(key) is not None
    }
    problems = [f"{p.field}: {p.message}" for p in validate_documents([manifest])]
    if problems:
        return None, problems
    try:
        return LLMService.model_validate(manifest, by_alias=True, by_name=False), []
    except ValidationError as error:  # validate_documents reports these; belt and braces
        return None, [str(error)]


def make_plan(
    body: dict[str, Any],
    uid: str | None,
    autoscaled_replicas: int | None = None,
    fallback_services: Mapping[str, LLMService] | None = None,
    existing_secrets: Collection[str] | None = None,
    defaults: OperatorDefaults = NO_DEFAULTS,
    parameters: float | None = None,
) -> Plan:
    """`body` is the LLMService as the apiserver returns it (status is ignored). `fallback_services`
    and `existing_secrets` are what the router's fallbacks can use (see router.config); `defaults`
    are the operator-wide images and pull secrets (see llm_operator.defaults); `parameters` is the model's
    count read from the Hub, for the fit check when spec.model.parameters is unset."""
    parsed, problems = parse(body)
    if parsed is None:
        return Plan(service=None, problems=problems)
    service = apply_defaults(parsed, defaults)
    problems = engine_problems(service)
    if problems:
        return Plan(service=None, problems=problems)
    fit = check_fit(fit_input(service.spec, parameters))
    skip = service.metadata.annotations.get(SKIP_FIT_CHECK_ANNOTATION) == "true"
    if not fit.fits and not skip:
        return Plan(service=service, fit=fit)
    return Plan(service=service, fit=fit, objects=desired_objects(
        service, uid, autoscaled_replicas, fallback_services, existing_secrets
    ))
