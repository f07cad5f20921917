"""kopf registrations, and nothing else: each hands the event to llm_operator.controller (reconcile,
autoscaling, status and events, per-uid state), which reads, calls the pure core, applies and writes
status. Nothing here decides.

- create/update/resume of an LLMService reconciles it: the plan (plan.py) is applied with
  server-side apply, then status is computed (status.py); so are the LLMServices that name it
  as a fallback.
- a resync loop (every 30 s, `--resync-interval`) rebuilds each plan and refreshes status; it
  applies only when the plan differs from the last one applied, or that was 30 minutes ago, so
  an idle operator costs the apiserver a few reads per LLMService (bench/operator_scale).
- events of the children (Deployments, Services, PVCs, ConfigMaps, HPAs with our labels) reconcile
  their owner at once, so a child deleted or edited by hand is restored within seconds;
  Pod events refresh status. Their handlers only mark the owner due (controller/due.py), and four
  worker threads do the work, once per owner however many events came.
- Secrets are not watched (that would take list and watch on Secrets): referenced Secrets are
  checked by name, metadata only; a missing one at every reconcile, so one created later clears
  SecretNotFound at the next resync, and one found again after 5 minutes (controller/cache.py).
- Deployments and Pods are read from these watches, not from the apiserver (controller/cache.py).
- an autoscaling loop samples Prometheus and applies the pure policy's decision.
- no deletion handler and no finalizer: children carry owner references and the garbage
  collector removes them, so deletion never hangs while the operator is down.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from llm_operator import GROUP, PLURAL, VERSION, metrics
from llm_operator.controller import cache, registry
from llm_operator.controller.autoscaling import autoscale, autoscaling_enabled
from llm_operator.controller.diffbase import DigestDiffBaseStorage
from llm_operator.controller.due import Workers
from llm_operator.controller.loops import Loop
from llm_operator.controller.reconcile import (
    fallback_users,
    owner_ref,
    reconcile,
    reconcile_quietly,
    settle,
)
from llm_operator.controller.settings import autoscale_interval, resync_interval
from llm_operator.resources.common import MANAGED_BY

_log = logging.getLogger("llm_operator")
MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf's bookkeeping goes into annotations under our prefix; never into spec.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = DigestDiffBaseStorage(prefix=GROUP, key="last-handled-configuration")
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "llm-operator"
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    # Retries of a failed API request (a watch included) at most 5 s apart, for about 2 minutes: with kopf's
    # default (1, 1, 2, 3, 5, 8, 13, 21) a watch can still wait 21 s after an apiserver outage has ended, and a
    # change made meanwhile waits with it (tests/e2e/test_faults.py).
    settings.networking.error_backoffs = (1, 1, 2, 3, *[5] * 24)
    settings.batching.error_delays = (1, 2, 5, 10, 30, 60)
    settings.execution.max_workers = 20
    # After a handler, kopf waits this long for the watch to deliver its own annotation patch before it
    # takes a body without it as current and runs the create handler again. The default 5 s was too short
    # under a burst of 300+ LLMServices on a busy apiserver: the handler ran twice for nearly every one
    # (2 kopf PATCHes per LLMService instead of 1, and every child applied again; bench/operator_scale).
    settings.persistence.consistency_timeout = 30


@kopf.on.event(GROUP, VERSION, PLURAL)
async def track(event: kopf.RawEvent, body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
    """The latest body of every LLMService, for the periodic loops and for Pod events.
    (Not kopf timers: kopf puts a finalizer on every object that has a timer or daemon, and a
    finalizer would hang deletion while the operator is down.)"""
    if event.get("type") == "DELETED":
        registry.forget(namespace, name, body.get("metadata", {}).get("uid", ""))
    else:
        registry.known[(namespace, name)] = _fresh(body)


# A failed reconcile (the apiserver unreachable, a 5xx) is retried after 5 s, not kopf's default 60 s: kopf keeps
# the retry time in the object's progress record, and a change made after an apiserver outage would wait for
# the retry of a handler that failed during it (tests/e2e/test_faults.py). Refusals the user can fix
# (validation, Forbidden) do not raise: they are Stalled conditions.
RETRY_SECONDS = 5


@kopf.on.resume(GROUP, VERSION, PLURAL, backoff=RETRY_SECONDS)
@kopf.on.create(GROUP, VERSION, PLURAL, backoff=RETRY_SECONDS)
@kopf.on.update(GROUP, VERSION, PLURAL, backoff=RETRY_SECONDS)
def on_change(body: kopf.Body, reason: str, logger: kopf.Logger, **_: Any) -> None:
    fresh = _fresh(body)
    reconcile(fresh, logger)
    meta = fresh["metadata"]
    _log.info(f"reconciled {meta['namespace']}/{meta['name']} generation {meta.get('generation')} ({reason})")
    for other in fallback_users(meta["namespace"], meta["name"]):
        reconcile_quietly(other, logger)


_loops: list[Loop] = []
due_workers = Workers(registry.due, lambda entry: settle(entry, _log), count=4)


@kopf.on.startup()
def start_loops(**_: Any) -> None:
    # Resync repairs drift and refreshes status (Pods becoming Ready, the scheduler's verdicts).
    _loops.append(Loop("resync", resync_interval(), lambda body: reconcile_quietly(body, _log, lazy=True),
                        lambda _: True))
    _loops.append(Loop("autoscale", autoscale_interval(), autoscale, autoscaling_enabled))
    for loop in _loops:
        loop.start()
    due_workers.start()
    metrics.due_queue.set_function(lambda: len(registry.due))


@kopf.on.cleanup()
def stop_loops(**_: Any) -> None:
    for loop in _loops:
        loop.stopped.set()
    due_workers.stopped.set()


def _fresh(body: kopf.Body) -> dict:
    """kopf's Body is a live view; a plain copy is what the pure core wants. Without managedFields, which
    nothing reads and which were half of every LLMService kept in registry.known (bench/operator_scale)."""
    fresh = {key: body[key] for key in ("apiVersion", "kind", "spec", "status") if key in body}
    fresh["metadata"] = {key: value for key, value in body.get("metadata", {}).items() if key != "managedFields"}
    return fresh


async def on_child_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    """Async, and quick: kopf would keep the body alive while a sync handler waits for a thread
    (controller/due.py). The owner's work is marked due and done by `due_workers`."""
    child = event.get("object") or {}
    workload = child.get("kind") in WORKLOADS
    if workload:
        cache.watched.update(event.get("type"), child)
    ref = owner_ref(child)
    if ref is None or event.get("type") not in ("DELETED", "MODIFIED"):
        return
    owner = (child["metadata"]["namespace"], ref[0])
    if event.get("type") == "DELETED":
        registry.due.mark(owner, ref[1], reapply=True)
    else:
        registry.due.mark(owner, ref[1], child=child, refresh=workload)


WORKLOADS = ("Deployment", "LeaderWorkerSet")  # kept in the watch cache; their status changes refresh ours
for _group_version, _plural in (
    ("apps/v1", "deployments"), ("v1", "services"), ("v1", "persistentvolumeclaims"), ("v1", "configmaps"),
    ("autoscaling/v2", "horizontalpodautoscalers"),
    # Only where LeaderWorkerSet is installed: kopf serves a resource once its CRD exists.
    ("leaderworkerset.x-k8s.io/v1", "leaderworkersets"),
):
    kopf.on.event(_group_version, _plural, labels=MANAGED)(on_child_event)


@kopf.on.event("v1", "pods", labels=MANAGED)
async def on_pod_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    """Pods carry no owner reference to us (their ReplicaSet owns them): their LLMService is named by the
    instance label, and its status refreshed."""
    pod = event.get("object") or {}
    cache.watched.update(event.get("type"), pod)
    meta = pod.get("metadata") or {}
    instance = (meta.get("labels") or {}).get(cache.INSTANCE)
    if instance:
        registry.due.mark((meta["namespace"], instance), refresh=True)
