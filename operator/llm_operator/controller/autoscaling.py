"""The autoscaling tick of one LLMService: sample Prometheus, ask the pure policy (autoscale/policy.py),
record its decision in status.desiredReplicas (the only writer), and reconcile lazily."""

from __future__ import annotations

import datetime
import logging
import time
from collections import deque
from dataclasses import replace

from llm_operator import kube, metrics
from llm_operator.api.models import LLMService
from llm_operator.autoscale.config import policy_config
from llm_operator.autoscale.policy import Decision, ScalerState, decide, history_length, scaling_condition
from llm_operator.autoscale.prometheus import MetricsUnavailable, PrometheusMetrics
from llm_operator.controller import cache, model_size, registry
from llm_operator.controller.reconcile import reconcile
from llm_operator.controller.settings import autoscale_interval, operator_defaults, prometheus_url
from llm_operator.controller.state import ServiceState
from llm_operator.controller.status import now
from llm_operator.engines.base import multi_node
from llm_operator.naming import router_name
from llm_operator.plan import make_plan
from llm_operator.resources.common import ROUTER_COMPONENT, selector_labels
from llm_operator.resources.leaderworkerset import API_VERSION as LWS_API_VERSION
from llm_operator.resources.leaderworkerset import KIND as LWS_KIND
from llm_operator.resources.service import engine_selector
from llm_operator.router.config import router_metrics_enabled
from llm_operator.status import pod_ready

_log = logging.getLogger("llm_operator")


def autoscaling_enabled(body: dict) -> bool:
    service = registry.service_of(body)
    return service is not None and service.spec.autoscaling.enabled


def _engine_pods(namespace: str, service: LLMService, deployment: dict) -> tuple[list[str], int]:
    """(names of ready engine Pods, count of live Pods still starting); of a multi-node group, the leader
    stands for the group: it serves the API and exports the engine's metrics, and is ready once every
    stage has joined."""
    pods = cache.pods(namespace, engine_selector(service), deployment)
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    ready = [p["metadata"]["name"] for p in live if pod_ready(p)]
    return ready, len(live) - len(ready)


def _router_pods(namespace: str, service: LLMService) -> list[str]:
    router = cache.deployment(namespace, router_name(service))
    pods = cache.pods(namespace, selector_labels(service, ROUTER_COMPONENT), router)
    return [p["metadata"]["name"] for p in pods if pod_ready(p)]


def autoscale(fresh: dict) -> None:
    """Sample the engine's metrics, ask the pure policy, apply its answer."""
    logger = _log
    namespace, name = fresh["metadata"]["namespace"], fresh["metadata"]["name"]
    state = registry.states.of(fresh["metadata"]["uid"])
    service = registry.service_of(fresh)
    known = model_size.recorded(fresh, service) if service is not None else None
    plan = make_plan(fresh, None, defaults=operator_defaults(), parameters=known)
    if plan.service is None or not plan.deploy:
        return
    service = plan.service
    deployment = cache.workload(namespace, name, multi_node(service.spec))
    if deployment is None:
        return
    current = deployment["spec"].get("replicas", 0)
    ready, starting = _engine_pods(namespace, service, deployment)
    config = policy_config(service.spec)
    needed = history_length(config, autoscale_interval())
    if state.history.maxlen != needed:
        state.history = deque(state.history, maxlen=needed)
    history = state.history
    try:
        read_router = service.spec.router.enabled and router_metrics_enabled(service)
        router_pods = _router_pods(namespace, service) if read_router else []
        history.append(PrometheusMetrics(prometheus_url()).sample(
            service.spec.engine, namespace, ready, starting, router_pods,
            parallel_slots=service.spec.serving.max_concurrent_requests or 1,
        ))
        unavailable = None
    except MetricsUnavailable as error:
        unavailable = str(error)
        metrics.metric_source_errors.labels("prometheus").inc()
    status = fresh.get("status") or {}
    scaler = state.scaler or ScalerState(replicas=current, last_scale_time=_parse_time(status.get("lastScaleTime")))
    decision = decide(list(history), replace(scaler, replicas=current), config, time.time())
    state.scaler = decision.state
    state.scaling = scaling_condition(current, decision, unavailable)
    metrics.autoscaler_decisions.labels(_decision_kind(current, decision, unavailable)).inc()
    if not unavailable:
        metrics.desired_replicas.labels(namespace, name).set(decision.desired_replicas)
    if unavailable:
        pass  # no decision to record: it holds what the Deployment has
    elif decision.desired_replicas != current:
        _scale(fresh, state, current, decision.desired_replicas, decision.reason, logger,
               groups=multi_node(service.spec))
    else:
        _record(fresh, state, decision.desired_replicas)
    # Lazy: a tick that changed nothing applies nothing (the plan's digest holds the replica count).
    reconcile(fresh, logger, lazy=True)


def _decision_kind(current: int, decision: Decision, unavailable: str | None) -> str:
    """The decision's label in llm_operator_autoscaler_decisions_total."""
    if unavailable or decision.held:
        return "hold"
    if decision.desired_replicas > current:
        return "scale_up"
    return "scale_down" if decision.desired_replicas < current else "steady"


def _record(body: dict, state: ServiceState, desired: int) -> None:
    """A decision to keep the count: written to status.desiredReplicas the first time (a new object, an
    operator restart), not on every tick."""
    state.replicas = desired
    if (body.get("status") or {}).get("desiredReplicas") != desired:
        kube.patch_llmservice_status(body["metadata"]["namespace"], body["metadata"]["name"],
                                     {"desiredReplicas": desired})
        body.setdefault("status", {})["desiredReplicas"] = desired


def _scale(body: dict, state: ServiceState, current: int, desired: int, reason: str, logger: logging.Logger,
           groups: bool = False) -> None:
    """Record the decision; the plan applied next carries it. LeaderWorkerSet groups are also scaled through
    their scale subresource at once (the apply that follows sets the same count)."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    state.replicas = desired
    if groups:
        kube.scale(LWS_API_VERSION, LWS_KIND, namespace, name, desired)
    stamp = now()
    kube.patch_llmservice_status(namespace, name, {
        "desiredReplicas": desired, "lastScaleTime": stamp, "scaleReason": reason,
    })
    body.setdefault("status", {}).update(desiredReplicas=desired, lastScaleTime=stamp, scaleReason=reason)
    message = f"scaled from {current} to {desired} replicas: {reason}"
    kube.post_event(body, "Normal", "Scaled", message)
    logger.info(message)


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC).timestamp()
