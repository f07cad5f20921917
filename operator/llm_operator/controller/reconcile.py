"""Reconcile one LLMService: read what the plan needs, build it (plan.py), apply it with server-side
apply when it changed, then write status (controller/status.py)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace

import kopf
from kubernetes.dynamic.exceptions import ForbiddenError, NotFoundError

from llm_operator import GROUP, VERSION, kube, metrics
from llm_operator.api.models import LLMService
from llm_operator.controller import cache, model_size, registry
from llm_operator.controller.due import Due
from llm_operator.controller.settings import FULL_APPLY_SECONDS, operator_defaults
from llm_operator.controller.state import AppliedPlan, ServiceState
from llm_operator.controller.status import (
    changed,
    engine_secrets_missing,
    observe,
    router_condition,
    warn_missing_secrets,
    warn_once,
)
from llm_operator.naming import master_key_secret_name
from llm_operator.plan import Plan, make_plan
from llm_operator.resources.pvc import pvc_change
from llm_operator.router.config import falls_back_to, referenced_secrets, referenced_services
from llm_operator.router.objects import build_router_secret, generate_master_key
from llm_operator.status import compute_status


def _router_inputs(service: LLMService | None, namespace: str) -> tuple[dict[str, LLMService], set[str]]:
    """The fallback LLMServices that exist, and which referenced Secrets exist (names only)."""
    if service is None:
        return {}, set()
    services: dict[str, LLMService] = {}
    for name in referenced_services(service):
        other = kube.get_llmservice(namespace, name)
        parsed = registry.service_of(other) if other is not None else None
        if parsed is not None:
            services[name] = parsed
    existing = {name for name in referenced_secrets(service) if cache.secret_exists(namespace, name)}
    return services, existing


def _ensure_master_key(service: LLMService, uid: str) -> None:
    """Generated once; never rewritten, so clients' keys keep working across reconciles."""
    name = master_key_secret_name(service)
    if service.spec.router.master_key_secret_ref is None and not kube.exists_metadata_only(
        "v1", "Secret", service.metadata.namespace or "", name
    ):
        secret = build_router_secret(service, uid, generate_master_key())
        if secret is not None:
            kube.create_if_absent(secret)


class ApplyForbidden(Exception):
    """The apiserver refused an apply for lack of permission: RBAC narrowed by hand, or a chart too old."""


def _apply_plan(plan: Plan, namespace: str) -> None:
    for manifest in plan.objects:
        try:
            if manifest["kind"] == "PersistentVolumeClaim":
                existing = kube.get("v1", "PersistentVolumeClaim", namespace, manifest["metadata"]["name"])
                manifest = pvc_change(existing, manifest)
            kube.apply(manifest)
        except ForbiddenError as error:
            if "NamespaceTerminating" in str(error.body):
                raise
            raise ApplyForbidden(
                f"the operator may not apply {manifest['kind']} {manifest['metadata']['name']}: "
                f"{_apiserver_message(error)}; grant it the rules of the Helm chart "
                "(charts/llm-operator/templates/_helpers.tpl); it tries again at every resync"
            ) from None


def _apiserver_message(error: ForbiddenError) -> str:
    try:
        return str(json.loads(error.body).get("message") or error.summary())
    except (TypeError, ValueError):
        return str(error.summary())


def _should_apply(state: ServiceState, plan: Plan, apply: bool, lazy: bool) -> bool:
    """Always for a change of the LLMService (apply, not lazy); for the resync (lazy) when the plan differs
    from the one applied last or that was FULL_APPLY_SECONDS ago; for a status refresh (apply False) when
    the plan differs: status must never report what is not applied yet (a fallback that appeared is in
    RouterReady only once the router's config holds it)."""
    last = state.last_applied
    changed = last is None or last.digest != plan.digest
    if not apply:
        return changed
    return not lazy or changed or time.monotonic() - last.at >= FULL_APPLY_SECONDS


def reconcile(body: dict, logger: logging.Logger | kopf.Logger, apply: bool = True, lazy: bool = False) -> None:
    """Apply the plan when it is due (see _should_apply) and write status. `apply` False: a status refresh
    (it still applies a plan that changed); `lazy` (the resync): skip the apply of the plan applied last,
    recently."""
    with metrics.reconcile_timer() as result:
        _reconcile(body, logger, apply, lazy, result)


def _reconcile(body: dict, logger: logging.Logger | kopf.Logger, apply: bool, lazy: bool,
               result: Callable[[str], None]) -> None:
    meta = body["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    state = registry.states.of(uid)
    with state.lock:
        service = registry.service_of(body)
        fallbacks, secrets = _router_inputs(service, namespace)
        size = model_size.lookup(body, service)
        plan = make_plan(
            body, uid, _autoscaled_replicas(body, state), fallbacks, secrets, defaults=operator_defaults(),
            parameters=size.parameters,
        )
        plan = replace(plan, fit=model_size.explain_unknown(plan.fit, size))
        forbidden: str | None = None
        if plan.problems:
            result("refused")
            warn_once(body, state, "spec", "InvalidSpec", "; ".join(plan.problems))
        elif plan.fit is not None and not plan.deploy:
            result("refused")
            if warn_once(body, state, "spec", "ModelDoesNotFit", plan.fit.message):
                metrics.fit_check_refusals.labels(plan.fit.reason).inc()
        elif _should_apply(state, plan, apply, lazy):
            result("applied")
            state.warnings.pop("spec", None)
            try:
                if plan.service is not None and plan.service.spec.router.enabled:
                    _ensure_master_key(plan.service, uid)
                _apply_plan(plan, namespace)
                state.last_applied = AppliedPlan(plan.digest, time.monotonic(), plan.objects)
                state.warnings.pop("rbac", None)
            except ApplyForbidden as error:
                result("error")
                forbidden = str(error)
                if warn_once(body, state, "rbac", "Forbidden", forbidden):
                    logger.error(f"{namespace}/{name}: {forbidden}")
        router = router_condition(plan, namespace, fallbacks, secrets)
        missing_secrets = engine_secrets_missing(plan, namespace)
        warn_missing_secrets(body, state, missing_secrets)
        status = compute_status(observe(plan, body, namespace, name, router, missing_secrets, state.scaling,
                                        forbidden))
        metrics.current_replicas.labels(namespace, name).set(status.get("replicas") or 0)
        if size.record is not None:
            status[model_size.STATUS_FIELD] = size.record
        # Compare with what this process wrote last, not with a body that may be a few events old.
        if changed(state.last_status or body.get("status") or {}, status):
            kube.patch_llmservice_status(namespace, name, status)
            state.last_status = status
            logger.debug(f"status: {status['phase']}")


def _autoscaled_replicas(body: dict, state: ServiceState) -> int | None:
    """The autoscaler's count for this object (this uid): what it decided in this process, else what
    its status recorded (an operator restart); None with autoscaling off."""
    service = registry.service_of(body)
    if service is None or not service.spec.autoscaling.enabled:
        state.stop_autoscaling()
        return None
    if state.replicas is not None:
        return state.replicas
    return (body.get("status") or {}).get("desiredReplicas")


def reconcile_quietly(
    body: dict, logger: logging.Logger | kopf.Logger, apply: bool = True, lazy: bool = False
) -> None:
    """For event-driven reconciles: an owner or namespace on its way out is not an error."""
    try:
        reconcile(body, logger, apply=apply, lazy=lazy)
    except (NotFoundError, ForbiddenError) as error:
        if isinstance(error, ForbiddenError) and "NamespaceTerminating" not in str(error.body):
            raise
        logger.debug(f"skipped: {error.summary()}")


def owner_ref(child: dict) -> tuple[str, str] | None:
    """The (name, uid) of the LLMService that controls this child, from its ownerReferences."""
    for ref in child.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("apiVersion") == f"{GROUP}/{VERSION}" and ref.get("controller"):
            return ref["name"], ref["uid"]
    return None


def live_owner(namespace: str, name: str, uid: str | None) -> dict | None:
    """The LLMService a child belongs to, unless it is gone, being deleted, or (with `uid`) a different
    object of the same name: children removed by garbage collection (or a terminating namespace) must stay
    removed. Without a uid (a Pod names its LLMService by label) only the watch's view is asked."""
    # The watch's latest body when it has one: child events are frequent, reads are not free.
    body = registry.known.get((namespace, name))
    if body is None and uid is not None:
        body = kube.get_llmservice(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    if uid is not None and body["metadata"]["uid"] != uid:
        return None
    return body


def settle(due: Due, logger: logging.Logger) -> None:
    """Do what the children's events asked of their owner (controller/due.py): apply the plan when a child
    was deleted or drifted from it, else refresh status when a Deployment or Pod changed."""
    parent = live_owner(*due.owner, due.uid)
    if parent is None:
        return
    if due.reapply or not all(still_as_applied(parent, child) for child in due.compare.values()):
        reconcile_quietly(parent, logger)
    elif due.refresh:
        reconcile_quietly(parent, logger, apply=False)


def still_as_applied(owner: dict, child: dict) -> bool:
    """Whether the child still holds every field we applied last: then the change was someone else's
    field (a controller's status, an HPA's metrics), and no drift to repair."""
    state = registry.states.get(owner["metadata"]["uid"])
    if state is None:
        return False
    # The owner's reconcile may be applying right now, and this event be the echo of its own apply (a
    # controller's first status): compare with what it applies once done, not with the plan before it
    # (or none), which made every new LLMService apply all its objects twice during a burst.
    with state.lock:
        applied = state.last_applied
    for desired in applied.objects if applied else []:
        if desired["kind"] == child.get("kind") and desired["metadata"]["name"] == child["metadata"]["name"]:
            return kube.contains(child, desired)
    return False


def fallback_users(namespace: str, name: str) -> list[dict]:
    """The known LLMServices of `namespace` whose router falls back to LLMService `name`: they pick
    it up (or drop it) at once instead of at the next resync."""
    users = []
    for (ns, _), body in list(registry.known.items()):
        if ns != namespace or body["metadata"].get("deletionTimestamp"):
            continue
        service = registry.service_of(body)
        if service is not None and falls_back_to(service, name):
            users.append(body)
    return users
