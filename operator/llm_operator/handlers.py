"""kopf registrations: read, build, apply, write status. Nothing here decides.

- create/update/resume of an LLMService reconciles it: the plan (plan.py) is applied with
  server-side apply, then status is computed (status.py); so are the LLMServices that name it
  as a fallback.
- a resync loop (every 30 s, `--resync-interval`) rebuilds each plan and refreshes status; it
  applies only when the plan differs from the last one applied, or that was 5 minutes ago, so
  an idle operator costs the apiserver a few reads per LLMService (bench/operator_scale).
- events of the children (Deployments, Services, PVCs, ConfigMaps, HPAs with our labels) reconcile
  their owner at once, so a child deleted or edited by hand is restored within seconds;
  Pod events refresh status.
- Secrets are not watched (that would take list and watch on Secrets): the engine's referenced
  Secrets are checked by name on every reconcile, so one created later clears SecretNotFound at
  the next resync.
- an autoscaling loop samples Prometheus and applies the pure policy's decision.
- no deletion handler and no finalizer: children carry owner references and the garbage
  collector removes them, so deletion never hangs while the operator is down.
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import kopf
from kubernetes.dynamic.exceptions import ForbiddenError, NotFoundError

from llm_operator import GROUP, PLURAL, VERSION, kube
from llm_operator.api.models import LLMService
from llm_operator.autoscale.config import policy_config
from llm_operator.autoscale.policy import Sample, ScalerState, decide
from llm_operator.autoscale.prometheus import MetricsUnavailable, PrometheusMetrics
from llm_operator.defaults import OperatorDefaults, defaults_from_env
from llm_operator.plan import Plan, endpoint, make_plan
from llm_operator.references import engine_secret_references, missing_engine_secrets
from llm_operator.resources.common import MANAGED_BY, ROUTER_COMPONENT, selector_string
from llm_operator.resources.pvc import pvc_change
from llm_operator.resources.router import (
    build_router_secret,
    generate_master_key,
    master_key_secret_name,
    missing_references,
    router_name,
    router_status,
)
from llm_operator.router.config import router_metrics_enabled
from llm_operator.status import Observed, compute_status, pod_ready

# A resync applies an unchanged plan again only this often: hand edits of watched children arrive
# as events, and this catches what is not watched (the generated Secret) and any missed event.
FULL_APPLY_SECONDS = 300.0
_log = logging.getLogger("llm_operator")
MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}

_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
_last_warning: dict[str, str] = {}
_last_status: dict[str, dict] = {}
# Per uid: (plan digest, time.monotonic() of the apply, the objects applied).
_last_applied: dict[str, tuple[str, float, list[dict]]] = {}
# The autoscaler's replica count and ScalingActive condition per LLMService. status keeps them
# across restarts; this keeps a reconcile that holds a slightly older body from undoing them.
_autoscaled: dict[str, int] = {}
_known: dict[tuple[str, str], dict] = {}
_autoscale_memo: defaultdict[str, dict] = defaultdict(dict)  # per uid: metric history, policy state
_scaling: dict[str, tuple[str, str, str]] = {}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf's bookkeeping goes into annotations under our prefix; never into spec.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "llm-operator"
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    settings.batching.error_delays = (1, 2, 5, 10, 30, 60)
    settings.execution.max_workers = 20


@kopf.on.event(GROUP, VERSION, PLURAL)
def track(event: kopf.RawEvent, body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
    """The latest body of every LLMService, for the periodic loops and for Pod events.
    (Not kopf timers: kopf puts a finalizer on every object that has a timer or daemon, and a
    finalizer would hang deletion while the operator is down.)"""
    if event.get("type") == "DELETED":
        _known.pop((namespace, name), None)
        _last_applied.pop(body.get("metadata", {}).get("uid", ""), None)
        _last_warning.pop(f"{body.get('metadata', {}).get('uid', '')}/secrets", None)
    else:
        _known[(namespace, name)] = _fresh(body)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _router_inputs(body: dict) -> tuple[dict[str, LLMService], set[str]]:
    """The fallback LLMServices that exist, and which referenced Secrets exist (names only)."""
    namespace = body["metadata"]["namespace"]
    router = body.get("spec", {}).get("router") or {}
    services: dict[str, LLMService] = {}
    secret_names = {ref["name"] for ref in [router.get("masterKeySecretRef")] if ref}
    for fallback in router.get("fallbacks") or []:
        if fallback.get("llmService"):
            other = kube.get_llmservice(namespace, fallback["llmService"])
            if other is not None:
                parsed = make_plan(other, None).service
                if parsed is not None:
                    services[fallback["llmService"]] = parsed
        if fallback.get("apiKeySecretRef"):
            secret_names.add(fallback["apiKeySecretRef"]["name"])
    existing = {name for name in secret_names if kube.exists_metadata_only("v1", "Secret", namespace, name)}
    return services, existing


def _missing_engine_secrets(plan: Plan, namespace: str) -> list[str] | None:
    """Messages for the Secrets the engine Pods need that do not exist (metadata-only reads, like the
    router's); None when nothing is deployed or no Secret is referenced.
    Secrets are not watched (that would need list and watch on Secrets, whose values a watch
    delivers): the resync (every 30 s) checks again, so a Secret created later is noticed then."""
    if plan.service is None or not plan.deploy:
        return None
    names = {ref.secret for ref in engine_secret_references(plan.service)}
    if not names:
        return None
    existing = {name for name in names if kube.exists_metadata_only("v1", "Secret", namespace, name)}
    return missing_engine_secrets(plan.service, existing)


def _warn_missing_secrets(body: dict, uid: str, missing: list[str] | None) -> None:
    """One SecretNotFound Event per distinct set of missing Secrets; forgotten once they exist, so
    a Secret deleted later is reported again."""
    key = f"{uid}/secrets"
    if missing:
        _warn_once(body, key, "SecretNotFound", "; ".join(missing))
    else:
        _last_warning.pop(key, None)


def _ensure_master_key(service: LLMService, uid: str) -> None:
    """Generated once; never rewritten, so clients' keys keep working across reconciles."""
    name = master_key_secret_name(service)
    if service.spec.router.master_key_secret_ref is None and not kube.exists_metadata_only(
        "v1", "Secret", service.metadata.namespace or "", name
    ):
        secret = build_router_secret(service, uid, generate_master_key())
        if secret is not None:
            kube.create_if_absent(secret)


def _router_condition(plan: Plan, namespace: str, fallbacks: dict, secrets: set[str]) -> tuple[str, str, str] | None:
    service = plan.service
    if service is None or not service.spec.router.enabled:
        return None
    missing = missing_references(service, fallbacks, secrets)
    deployment = kube.get("apps/v1", "Deployment", namespace, router_name(service)) if plan.deploy else None
    if deployment is None:
        return router_status(missing)
    ready = (deployment.get("status") or {}).get("readyReplicas") or 0
    return router_status(missing, ready, deployment["spec"].get("replicas", 1))


def _apply_plan(plan: Plan, namespace: str) -> None:
    for manifest in plan.objects:
        if manifest["kind"] == "PersistentVolumeClaim":
            existing = kube.get("v1", "PersistentVolumeClaim", namespace, manifest["metadata"]["name"])
            manifest = pvc_change(existing, manifest)
        kube.apply(manifest)


def _warn_once(body: dict, key: str, reason: str, message: str) -> None:
    """One Warning Event per distinct refusal, not one per resync."""
    if _last_warning.get(key) != message:
        _last_warning[key] = message
        kube.post_event(body, "Warning", reason, message)


def _observe(
    plan: Plan, body: dict, namespace: str, name: str, router: tuple[str, str, str] | None,
    missing_secrets: list[str] | None = None,
) -> Observed:
    spec = plan.service.spec if plan.service else None
    deployment = kube.get("apps/v1", "Deployment", namespace, name) if spec else None
    desired = (deployment or {}).get("spec", {}).get("replicas")
    if desired is None:
        desired = spec.replicas if spec else 0
    selector = selector_string(plan.service) if plan.service else ""
    pods = kube.list_objects("v1", "Pod", namespace, selector) if selector else []
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
        scaling=_scaling.get(f"{namespace}/{name}"),
        missing_secrets=missing_secrets,
        previous_conditions=(body.get("status") or {}).get("conditions") or [],
        now=_now(),
    )


def _unchanged_since_last_apply(uid: str, plan: Plan) -> bool:
    last = _last_applied.get(uid)
    return last is not None and last[0] == plan.digest and time.monotonic() - last[1] < FULL_APPLY_SECONDS


def reconcile(body: dict, logger: logging.Logger | kopf.Logger, apply: bool = True, lazy: bool = False) -> None:
    """Apply the plan (unless `apply` is False: a status refresh) and write status.
    `lazy` (the resync): skip the apply when the plan is the one applied last, recently."""
    meta = body["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    key = f"{namespace}/{name}"
    with _locks[key]:
        fallbacks, secrets = _router_inputs(body)
        plan = make_plan(
            body, uid, _autoscaled_replicas(body, key), fallbacks, secrets, defaults=operator_defaults()
        )
        if plan.problems:
            _warn_once(body, uid, "InvalidSpec", "; ".join(plan.problems))
        elif plan.fit is not None and not plan.deploy:
            _warn_once(body, uid, "ModelDoesNotFit", plan.fit.message)
        elif apply and not (lazy and _unchanged_since_last_apply(uid, plan)):
            _last_warning.pop(uid, None)
            if plan.service is not None and plan.service.spec.router.enabled:
                _ensure_master_key(plan.service, uid)
            _apply_plan(plan, namespace)
            _last_applied[uid] = (plan.digest, time.monotonic(), plan.objects)
        router = _router_condition(plan, namespace, fallbacks, secrets)
        missing_secrets = _missing_engine_secrets(plan, namespace)
        _warn_missing_secrets(body, uid, missing_secrets)
        status = compute_status(_observe(plan, body, namespace, name, router, missing_secrets))
        # Compare with what this process wrote last, not with a body that may be a few events old.
        if _changed(_last_status.get(uid) or body.get("status") or {}, status):
            kube.patch_llmservice_status(namespace, name, status)
            _last_status[uid] = status
            logger.debug(f"status: {status['phase']}")


def _autoscaled_replicas(body: dict, key: str) -> int | None:
    if not (body.get("spec", {}).get("autoscaling") or {}).get("enabled"):
        _autoscaled.pop(key, None)
        _scaling.pop(key, None)
        return None
    return _autoscaled.get(key, (body.get("status") or {}).get("desiredReplicas"))


def _changed(current: dict, new: dict) -> bool:
    return any(current.get(key) != value for key, value in new.items())


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def on_change(body: kopf.Body, reason: str, logger: kopf.Logger, **_: Any) -> None:
    fresh = _fresh(body)
    reconcile(fresh, logger)
    meta = fresh["metadata"]
    _log.info(f"reconciled {meta['namespace']}/{meta['name']} generation {meta.get('generation')} ({reason})")
    for other in _fallback_users(meta["namespace"], meta["name"]):
        _reconcile_quietly(other, logger)


def _fallback_users(namespace: str, name: str) -> list[dict]:
    """The known LLMServices of `namespace` whose router falls back to LLMService `name`: they pick
    it up (or drop it) at once instead of at the next resync."""
    return [
        body for (ns, _), body in list(_known.items())
        if ns == namespace and not body["metadata"].get("deletionTimestamp")
        and any(f.get("llmService") == name
                for f in ((body.get("spec") or {}).get("router") or {}).get("fallbacks") or [])
    ]


class _Loop(threading.Thread):
    """Calls `fn(body)` for every known LLMService every `interval` seconds, in one thread."""

    def __init__(self, name: str, interval: float, fn: Callable[[dict], None], wanted: Callable[[dict], bool]):
        super().__init__(name=name, daemon=True)
        self.interval, self.fn, self.wanted = interval, fn, wanted
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            for body in list(_known.values()):
                if body["metadata"].get("deletionTimestamp") or not self.wanted(body):
                    continue
                try:
                    self.fn(body)
                except Exception:  # one object's failure must not stop the others' loop
                    _log.exception(f"{self.name} of {body['metadata']['namespace']}/{body['metadata']['name']}")


_loops: list[_Loop] = []


@kopf.on.startup()
def start_loops(**_: Any) -> None:
    # Resync repairs drift and refreshes status (Pods becoming Ready, the scheduler's verdicts).
    _loops.append(_Loop("resync", resync_interval(), lambda body: _reconcile_quietly(body, _log, lazy=True),
                        lambda _: True))
    _loops.append(_Loop("autoscale", autoscale_interval(), autoscale, _autoscaling_enabled))
    for loop in _loops:
        loop.start()


@kopf.on.cleanup()
def stop_loops(**_: Any) -> None:
    for loop in _loops:
        loop.stopped.set()


def _fresh(body: kopf.Body) -> dict:
    """kopf's Body is a live view; a plain copy is what the pure core wants."""
    return {key: body[key] for key in ("apiVersion", "kind", "metadata", "spec", "status") if key in body}


def _owner(body: kopf.Body) -> dict | None:
    """The live LLMService that controls this child, unless it is gone or being deleted:
    children removed by garbage collection (or a terminating namespace) must stay removed."""
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("apiVersion") == f"{GROUP}/{VERSION}" and ref.get("controller"):
            namespace = body["metadata"]["namespace"]
            # The watch's latest body when it has one: child events are frequent, reads are not free.
            owner = _known.get((namespace, ref["name"])) or kube.get_llmservice(namespace, ref["name"])
            if owner and owner["metadata"]["uid"] == ref["uid"] and not owner["metadata"].get("deletionTimestamp"):
                return owner
    return None


def _reconcile_quietly(
    body: dict, logger: logging.Logger | kopf.Logger, apply: bool = True, lazy: bool = False
) -> None:
    """For event-driven reconciles: an owner or namespace on its way out is not an error."""
    try:
        reconcile(body, logger, apply=apply, lazy=lazy)
    except (NotFoundError, ForbiddenError) as error:
        if isinstance(error, ForbiddenError) and "NamespaceTerminating" not in str(error.body):
            raise
        logger.debug(f"skipped: {error.summary()}")


def _still_as_applied(owner: dict, child: dict) -> bool:
    """Whether the child still holds every field we applied last: then the change was someone else's
    field (a controller's status, an HPA's metrics), and no drift to repair."""
    applied = _last_applied.get(owner["metadata"]["uid"])
    for desired in applied[2] if applied else []:
        if desired["kind"] == child.get("kind") and desired["metadata"]["name"] == child["metadata"]["name"]:
            return kube.contains(child, desired)
    return False


def _on_child_event(event: kopf.RawEvent, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    if event.get("type") not in ("DELETED", "MODIFIED"):
        return
    owner = _owner(body)
    if owner is None:
        return
    child = event.get("object") or {}
    if event.get("type") == "MODIFIED" and _still_as_applied(owner, child):
        if child.get("kind") == "Deployment":  # ready replicas feed status
            _reconcile_quietly(owner, logger, apply=False)
        return
    _reconcile_quietly(owner, logger)


for _group_version, _plural in (
    ("apps/v1", "deployments"), ("v1", "services"), ("v1", "persistentvolumeclaims"), ("v1", "configmaps"),
    ("autoscaling/v2", "horizontalpodautoscalers"),
):
    kopf.on.event(_group_version, _plural, labels=MANAGED)(_on_child_event)


@kopf.on.event("v1", "pods", labels=MANAGED)
def on_pod_event(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """Pods carry no owner reference to us (their ReplicaSet owns them); find the
    LLMService by the instance label and refresh its status."""
    labels = body.get("metadata", {}).get("labels", {})
    owner = _known.get((body["metadata"]["namespace"], labels.get("app.kubernetes.io/instance")))
    if owner is not None and not owner["metadata"].get("deletionTimestamp"):
        _reconcile_quietly(owner, logger, apply=False)


# --- autoscaling -----------------------------------------------------------------------------

def resync_interval() -> float:
    return float(os.environ.get("LLMOP_RESYNC_INTERVAL", "30"))


def autoscale_interval() -> float:
    return float(os.environ.get("LLMOP_AUTOSCALE_INTERVAL", "15"))


@functools.cache
def operator_defaults() -> OperatorDefaults:
    """Images and pull secrets set by `llm-operator run` flags, which pass them in the environment."""
    return defaults_from_env(os.environ)


def prometheus_url() -> str:
    return os.environ.get("LLMOP_PROMETHEUS_URL", "http://prometheus-operated.monitoring.svc:9090")


def _autoscaling_enabled(body: dict) -> bool:
    return bool((body.get("spec", {}).get("autoscaling") or {}).get("enabled"))


def _engine_pods(namespace: str, service: LLMService) -> tuple[list[str], int]:
    """(names of ready engine Pods, count of live Pods still starting)."""
    pods = kube.list_objects("v1", "Pod", namespace, selector_string(service))
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    ready = [p["metadata"]["name"] for p in live if pod_ready(p)]
    return ready, len(live) - len(ready)


def _router_pods(namespace: str, service: LLMService) -> list[str]:
    pods = kube.list_objects("v1", "Pod", namespace, selector_string(service, ROUTER_COMPONENT))
    return [p["metadata"]["name"] for p in pods if pod_ready(p)]


def autoscale(fresh: dict) -> None:
    """Sample the engine's metrics, ask the pure policy, apply its answer."""
    logger = _log
    namespace, name = fresh["metadata"]["namespace"], fresh["metadata"]["name"]
    memo = _autoscale_memo[fresh["metadata"]["uid"]]
    key = f"{namespace}/{name}"
    plan = make_plan(fresh, None, defaults=operator_defaults())
    if plan.service is None or not plan.deploy:
        return
    service = plan.service
    deployment = kube.get("apps/v1", "Deployment", namespace, name)
    if deployment is None:
        return
    current = deployment["spec"].get("replicas", 0)
    ready, starting = _engine_pods(namespace, service)
    config = policy_config(service.spec)
    # Keep as much history as the longest window the policy looks at (the prompt-rate peak).
    needed = max(240, int(max(config.window_s, config.prompt_rate_peak_window_s) / autoscale_interval()) + 10)
    history: deque[Sample] = memo.get("history") or deque(maxlen=needed)
    if history.maxlen != needed:
        history = deque(history, maxlen=needed)
    memo["history"] = history
    try:
        metrics = service.spec.router.enabled and router_metrics_enabled(service)
        router_pods = _router_pods(namespace, service) if metrics else []
        history.append(PrometheusMetrics(prometheus_url()).sample(
            service.spec.engine, namespace, ready, starting, router_pods,
            parallel_slots=service.spec.serving.max_concurrent_requests or 1,
        ))
        unavailable = None
    except MetricsUnavailable as error:
        unavailable = str(error)
    status = fresh.get("status") or {}
    state = memo.get("state") or ScalerState(replicas=current, last_scale_time=_parse_time(status.get("lastScaleTime")))
    decision = decide(list(history), replace(state, replicas=current), config, time.time())
    memo["state"] = decision.state
    if unavailable or decision.held:
        why = unavailable or decision.hold_reason
        _scaling[key] = ("False", "MetricsUnavailable", f"holding {current} replicas: {why}")
    else:
        _scaling[key] = ("True", "Scaling", decision.reason)
    if decision.desired_replicas != current and not unavailable:
        _scale(fresh, key, current, decision.desired_replicas, decision.reason, logger)
    reconcile(fresh, logger)


def _scale(body: dict, key: str, current: int, desired: int, reason: str, logger: logging.Logger) -> None:
    namespace, name = key.split("/", 1)
    _autoscaled[key] = desired
    now = _now()
    kube.patch_llmservice_status(namespace, name, {
        "desiredReplicas": desired, "lastScaleTime": now, "scaleReason": reason,
    })
    body.setdefault("status", {}).update(desiredReplicas=desired, lastScaleTime=now, scaleReason=reason)
    message = f"scaled from {current} to {desired} replicas: {reason}"
    kube.post_event(body, "Normal", "Scaled", message)
    logger.info(message)


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC).timestamp()
