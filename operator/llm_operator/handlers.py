"""kopf registrations: read, build, apply, write status. Nothing here decides.

- create/update/resume of an LLMService, and a timer every few seconds, reconcile it: the
  plan (plan.py) is applied with server-side apply, then status is computed (status.py).
- events of the children (Deployments, Services, PVCs with our labels) reconcile their
  owner at once, so a child deleted or edited by hand is restored within seconds.
- no deletion handler and no finalizer: children carry owner references and the garbage
  collector removes them, so deletion never hangs while the operator is down.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections import defaultdict
from typing import Any

import kopf

from llm_operator import GROUP, PLURAL, VERSION, kube
from llm_operator.plan import Plan, endpoint, make_plan
from llm_operator.resources.common import MANAGED_BY, selector_string
from llm_operator.resources.pvc import pvc_change
from llm_operator.status import Observed, compute_status

RESYNC_SECONDS = 10.0
MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}

_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
_last_warning: dict[str, str] = {}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf's bookkeeping goes into annotations under our prefix; never into spec.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "llm-operator"
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    settings.batching.error_delays = (1, 2, 5, 10, 30, 60)
    settings.execution.max_workers = 20


@kopf.index(GROUP, VERSION, PLURAL)
def llmservices(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[tuple[str, str], dict]:
    """The latest body of every LLMService, so child events can reconcile their owner."""
    return {(namespace, name): dict(body)}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
        kopf.warn(body, reason=reason, message=message)


def _observe(plan: Plan, body: dict, namespace: str, name: str) -> Observed:
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
        previous_conditions=(body.get("status") or {}).get("conditions") or [],
        now=_now(),
    )


def reconcile(body: dict, logger: logging.Logger | kopf.Logger) -> None:
    meta = body["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    key = f"{namespace}/{name}"
    with _locks[key]:
        plan = make_plan(body, uid)
        if plan.problems:
            _warn_once(body, key, "InvalidSpec", "; ".join(plan.problems))
        elif plan.fit is not None and not plan.deploy:
            _warn_once(body, key, "ModelDoesNotFit", plan.fit.message)
        else:
            _last_warning.pop(key, None)
            _apply_plan(plan, namespace)
        status = compute_status(_observe(plan, body, namespace, name))
        if _changed(body.get("status") or {}, status):
            kube.patch_llmservice_status(namespace, name, status)
            logger.debug(f"status: {status['phase']}")


def _changed(current: dict, new: dict) -> bool:
    return any(current.get(key) != value for key, value in new.items())


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def on_change(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    reconcile(_fresh(body), logger)


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
def resync(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """Repairs drift and refreshes status (Pods becoming Ready, the scheduler's verdicts)."""
    reconcile(_fresh(body), logger)


def _fresh(body: kopf.Body) -> dict:
    """kopf's Body is a live view; a plain copy is what the pure core wants."""
    return {key: body[key] for key in ("apiVersion", "kind", "metadata", "spec", "status") if key in body}


def _owner(body: kopf.Body, index: kopf.Index) -> dict | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("apiVersion") == f"{GROUP}/{VERSION}" and ref.get("controller"):
            owners = index.get((body["metadata"]["namespace"], ref["name"]), [])
            return next((o for o in owners if o["metadata"]["uid"] == ref["uid"]), None)
    return None


def _on_child_event(
    event: kopf.RawEvent, body: kopf.Body, llmservices: kopf.Index, logger: kopf.Logger, **_: Any
) -> None:
    owner = _owner(body, llmservices)
    if owner is not None and event.get("type") in ("DELETED", "MODIFIED"):
        reconcile(owner, logger)


for _group_version, _plural in (("apps/v1", "deployments"), ("v1", "services"), ("v1", "persistentvolumeclaims")):
    kopf.on.event(_group_version, _plural, labels=MANAGED)(_on_child_event)


@kopf.on.event("v1", "pods", labels=MANAGED)
def on_pod_event(body: kopf.Body, llmservices: kopf.Index, logger: kopf.Logger, **_: Any) -> None:
    """Pods carry no owner reference to us (their ReplicaSet owns them); find the
    LLMService by the instance label and refresh its status."""
    labels = body.get("metadata", {}).get("labels", {})
    owners = llmservices.get((body["metadata"]["namespace"], labels.get("app.kubernetes.io/instance")), [])
    for owner in owners:
        reconcile(owner, logger)
