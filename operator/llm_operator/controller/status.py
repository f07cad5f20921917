"""Status and events: what the operator observed, written to status (only when it changed) and told as
Events (one Warning per distinct message)."""

from __future__ import annotations

import datetime

from llm_operator import kube
from llm_operator.controller import cache
from llm_operator.controller.state import ServiceState
from llm_operator.engines.base import multi_node
from llm_operator.naming import router_name
from llm_operator.plan import Plan, endpoint
from llm_operator.references import engine_secret_references, missing_engine_secrets
from llm_operator.resources.common import selector_labels, selector_string
from llm_operator.router.status import missing_references, router_status
from llm_operator.status import Observed


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def warn_once(body: dict, state: ServiceState, topic: str, reason: str, message: str) -> bool:
    """One Warning Event per distinct refusal, not one per resync; True when it was new."""
    if state.warn_once(topic, message):
        kube.post_event(body, "Warning", reason, message)
        return True
    return False


def warn_missing_secrets(body: dict, state: ServiceState, missing: list[str] | None) -> None:
    """One SecretNotFound Event per distinct set of missing Secrets; forgotten once they exist, so
    a Secret deleted later is reported again."""
    if missing:
        warn_once(body, state, "secrets", "SecretNotFound", "; ".join(missing))
    else:
        state.warnings.pop("secrets", None)


def engine_secrets_missing(plan: Plan, namespace: str) -> list[str] | None:
    """Messages for the Secrets the engine Pods need that do not exist (metadata-only reads, like the
    router's); None when nothing is deployed or no Secret is referenced.
    Secrets are not watched (that would need list and watch on Secrets, whose values a watch
    delivers): the resync (every 30 s) checks again, so a Secret created later is noticed then."""
    if plan.service is None or not plan.deploy:
        return None
    names = {ref.secret for ref in engine_secret_references(plan.service)}
    if not names:
        return None
    existing = {name for name in names if cache.secret_exists(namespace, name)}
    return missing_engine_secrets(plan.service, existing)


def router_condition(plan: Plan, namespace: str, fallbacks: dict, secrets: set[str]) -> tuple[str, str, str] | None:
    service = plan.service
    if service is None or not service.spec.router.enabled:
        return None
    missing = missing_references(service, fallbacks, secrets)
    deployment = cache.deployment(namespace, router_name(service)) if plan.deploy else None
    if deployment is None:
        return router_status(missing)
    ready = (deployment.get("status") or {}).get("readyReplicas") or 0
    return router_status(missing, ready, deployment["spec"].get("replicas", 1))


def observe(
    plan: Plan, body: dict, namespace: str, name: str, router: tuple[str, str, str] | None,
    missing_secrets: list[str] | None = None, scaling: tuple[str, str, str] | None = None,
    forbidden: str | None = None,
) -> Observed:
    spec = plan.service.spec if plan.service else None
    deployment = cache.workload(namespace, name, multi_node(spec)) if spec else None
    desired = (deployment or {}).get("spec", {}).get("replicas")
    if desired is None:
        desired = spec.replicas if spec else 0
    selector = selector_string(plan.service) if plan.service else ""
    pods = cache.pods(namespace, selector_labels(plan.service), deployment) if plan.service else []
    return Observed(
        generation=body.get("metadata", {}).get("generation", 0),
        desired_replicas=desired,
        selector=selector,
        endpoint=endpoint(plan.service) if plan.service else "",
        problems=plan.problems,
        fit=plan.fit,
        deployed=plan.deploy,
        deployment=deployment,
        pods=pods,
        router=router,
        scaling=scaling,
        missing_secrets=missing_secrets,
        forbidden=forbidden,
        previous_conditions=(body.get("status") or {}).get("conditions") or [],
        autoscaling=bool(spec and spec.autoscaling.enabled),
        recorded_desired_replicas=(body.get("status") or {}).get("desiredReplicas"),
        now=now(),
    )


def changed(current: dict, new: dict) -> bool:
    return any(current.get(key) != value for key, value in new.items())
