"""Status from what the operator observed: a pure function, kstatus-compatible.

Conditions: Ready (the endpoint serves), Reconciling (work under way), Stalled (the spec
cannot be served as written), ModelFits (the fit check), RouterReady (the LiteLLM router),
SecretsFound (the Secrets the engine Pods reference exist), ScalingActive (the autoscaler).
`kubectl wait --for=condition=Ready`, Argo CD and Flux read these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from llm_operator.fit import FitResult


@dataclass(frozen=True)
class Observed:
    """Everything status depends on, read by the handler."""

    generation: int
    desired_replicas: int
    selector: str
    endpoint: str
    problems: list[str] = field(default_factory=list)
    """Why the operator refuses the spec (empty when it accepts it)."""
    fit: FitResult | None = None
    deployed: bool = True
    """False when the operator did not deploy (refused, or did not fit)."""
    deployment: dict[str, Any] | None = None
    """The engine's Deployment, or its LeaderWorkerSet when a replica spans several nodes."""
    pods: list[dict[str, Any]] = field(default_factory=list)
    router: tuple[str, str, str] | None = None
    """(status, reason, message) of RouterReady, or None without a router."""
    scaling: tuple[str, str, str] | None = None
    """(status, reason, message) of ScalingActive, or None without autoscaling."""
    missing_secrets: list[str] | None = None
    """Messages naming the engine Pods' Secrets that do not exist (references.missing_engine_secrets);
    None when not checked (nothing deployed, or no Secret referenced): then no SecretsFound condition."""
    forbidden: str | None = None
    """Why the apiserver refused the operator's apply (RBAC), when it did."""
    previous_conditions: list[dict[str, Any]] = field(default_factory=list)
    autoscaling: bool = False
    """spec.autoscaling.enabled: then status.desiredReplicas is the autoscaler's, written by it alone."""
    recorded_desired_replicas: int | None = None
    """status.desiredReplicas as the object holds it now."""
    now: str = ""


def _condition(observed: Observed, type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
    previous = next((c for c in observed.previous_conditions if c.get("type") == type_), None)
    changed = previous is None or previous.get("status") != status
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": observed.now if changed else previous.get("lastTransitionTime", observed.now),
        "observedGeneration": observed.generation,
    }


def pod_ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in pod.get("status", {}).get("conditions") or []
    )


def unschedulable_reason(pods: list[dict[str, Any]]) -> str | None:
    """The scheduler's own words for a Pod it could not place, e.g. `0/4 nodes are available:
    2 Insufficient nvidia.com/gpu...`."""
    for pod in pods:
        if pod.get("metadata", {}).get("deletionTimestamp"):
            continue
        for condition in pod.get("status", {}).get("conditions") or []:
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"
            ):
                return condition.get("message") or "the scheduler cannot place the Pod"
    return None


LAST_LOG_LINE_MAX = 200
# ANSI colour sequences and other control characters: noise in a status message.
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")


def last_log_line(message: str | None) -> str | None:
    """The last non-empty line of a terminated container's message, shortened to LAST_LOG_LINE_MAX.
    With terminationMessagePolicy FallbackToLogsOnError the kubelet puts the tail of a failed
    container's log there: usually the exception that stopped the engine."""
    lines = [clean for line in (message or "").splitlines() if (clean := _CONTROL.sub("", line).strip())]
    if not lines:
        return None
    line = lines[-1]
    return line if len(line) <= LAST_LOG_LINE_MAX else line[: LAST_LOG_LINE_MAX - 3] + "..."


def _crash_detail(container: dict[str, Any], waiting: dict[str, Any]) -> str:
    """`CrashLoopBackOff (exit code 1): <kubelet message>; last log line: "<line>"`."""
    terminated = (container.get("lastState") or {}).get("terminated") or {}
    exit_code = terminated.get("exitCode")
    code = f" (exit code {exit_code})" if exit_code is not None else ""
    detail = f"{waiting['reason']}{code}: {waiting.get('message', '')}"
    line = last_log_line(terminated.get("message"))
    return f'{detail}; last log line: "{line}"' if line else detail


def waiting_reason(pods: list[dict[str, Any]]) -> str | None:
    """A container that keeps failing: CrashLoopBackOff, ImagePullBackOff and the like."""
    for pod in pods:
        statuses = (pod.get("status", {}).get("initContainerStatuses") or []) + (
            pod.get("status", {}).get("containerStatuses") or []
        )
        for container in statuses:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull",
                                         "CreateContainerConfigError", "InvalidImageName"):
                name = pod["metadata"]["name"]
                if waiting["reason"] == "CrashLoopBackOff":
                    detail = _crash_detail(container, waiting)
                else:
                    detail = f"{waiting['reason']}: {waiting.get('message', '')}"
                return f"Pod {name} container {container.get('name')}: {detail}"
    return None


def _groups(workload: dict[str, Any] | None) -> bool:
    """Whether the engine's replicas are LeaderWorkerSet groups (several Pods each) rather than Pods."""
    return (workload or {}).get("kind") == "LeaderWorkerSet"


def _counts(observed: Observed) -> tuple[int, int, int]:
    """(replicas, ready, updated) of the engine's current generation of Pods, or of its groups: a group is
    ready when all its Pods are (the LeaderWorkerSet controller counts them)."""
    if _groups(observed.deployment):
        counts = (observed.deployment or {}).get("status") or {}
        return counts.get("replicas") or 0, counts.get("readyReplicas") or 0, counts.get("updatedReplicas") or 0
    live = [p for p in observed.pods if not p.get("metadata", {}).get("deletionTimestamp")]
    ready = sum(1 for p in live if pod_ready(p))
    dep_status = (observed.deployment or {}).get("status") or {}
    updated = dep_status.get("updatedReplicas", 0) or 0
    return len(live), ready, updated


def _rolled_out(observed: Observed) -> bool:
    deployment = observed.deployment or {}
    dep_status = deployment.get("status") or {}
    if _groups(deployment):
        # A LeaderWorkerSet has no observedGeneration; its UpdateInProgress condition says a rollout runs.
        updating = any(c.get("type") == "UpdateInProgress" and c.get("status") == "True"
                       for c in dep_status.get("conditions") or [])
        return (not updating and (dep_status.get("updatedReplicas") or 0) >= observed.desired_replicas
                and (dep_status.get("replicas") or 0) == (dep_status.get("updatedReplicas") or 0))
    generation = deployment.get("metadata", {}).get("generation")
    return (
        dep_status.get("observedGeneration") == generation
        and (dep_status.get("updatedReplicas") or 0) >= observed.desired_replicas
        and (dep_status.get("replicas") or 0) == (dep_status.get("updatedReplicas") or 0)
    )


def _phase(observed: Observed, replicas: int, ready: int) -> tuple[str, str, str]:
    """(phase, reason, message) of the engine."""
    desired = observed.desired_replicas
    if observed.problems:
        return "Failed", "InvalidSpec", "; ".join(observed.problems)
    if not observed.deployed and observed.fit is not None and not observed.fit.fits:
        return "Failed", "ModelDoesNotFit", observed.fit.message
    if observed.forbidden:
        return "Failed", "Forbidden", observed.forbidden
    crash = waiting_reason(observed.pods)
    if observed.missing_secrets:
        # Pods cannot start without them (CreateContainerConfigError); running ones would not restart.
        # The kubelet's own words follow ours, when a Pod already says it.
        message = "; ".join([*observed.missing_secrets, *([crash] if crash else [])])
        return ("Degraded" if ready else "Pending"), "SecretNotFound", message
    unschedulable = unschedulable_reason(observed.pods)
    if desired == 0:
        return "Ready", "ScaledToZero", "scaled to zero; the first request scales it back up"
    if ready >= desired and _rolled_out(observed):
        return "Ready", "Available", f"{ready}/{desired} replicas ready"
    if crash:
        return ("Degraded" if ready else "Failed"), "ContainerFailing", crash
    if unschedulable:
        phase = "Degraded" if ready else "Pending"
        return phase, "Unschedulable", f"{ready}/{desired} replicas ready; a Pod cannot be scheduled: {unschedulable}"
    if observed.deployment is None or replicas == 0:
        return "Pending", "Creating", "waiting for the engine Pods to be created"
    return "Progressing", "RollingOut", f"{ready}/{desired} replicas ready; waiting for the engine to start"


def secrets_found(missing: list[str]) -> tuple[str, str, str]:
    """(status, reason, message) of SecretsFound."""
    if missing:
        return "False", "SecretNotFound", "; ".join(missing)
    return "True", "AllFound", "every Secret the engine Pods reference exists"


def compute_status(observed: Observed) -> dict[str, Any]:
    replicas, ready, _ = _counts(observed)
    phase, reason, message = _phase(observed, replicas, ready)
    refused = phase == "Failed" and reason in ("InvalidSpec", "ModelDoesNotFit")
    router_ok = observed.router is None or observed.router[0] == "True"
    serving = phase == "Ready" and router_ok
    if phase == "Ready" and not router_ok:
        assert observed.router is not None
        ready_reason, ready_message = "RouterNotReady", observed.router[2]
    else:
        ready_reason, ready_message = reason, message
    conditions = [
        _condition(observed, "Ready", "True" if serving else "False", ready_reason, ready_message),
        _condition(
            observed, "Reconciling", "True" if phase in ("Pending", "Progressing") else "False",
            reason if phase in ("Pending", "Progressing") else "Reconciled",
            message if phase in ("Pending", "Progressing") else "the cluster matches the spec",
        ),
        _condition(
            observed, "Stalled", "True" if refused or (phase == "Failed") else "False",
            reason if phase == "Failed" else "Progressing",
            message if phase == "Failed" else "no blocking problem",
        ),
    ]
    if observed.fit is not None:
        fit = observed.fit
        conditions.append(_condition(observed, "ModelFits", fit.status, fit.reason, fit.message))
    if observed.router is not None:
        conditions.append(_condition(observed, "RouterReady", *observed.router))
    if observed.scaling is not None:
        conditions.append(_condition(observed, "ScalingActive", *observed.scaling))
    if observed.missing_secrets is not None:
        conditions.append(_condition(observed, "SecretsFound", *secrets_found(observed.missing_secrets)))
    status = {
        "observedGeneration": observed.generation,
        "phase": phase,
        "conditions": conditions,
        "replicas": replicas,
        "readyReplicas": ready,
        "ready": f"{ready}/{observed.desired_replicas}",
        "selector": observed.selector,
        "endpoint": observed.endpoint,
    }
    # desiredReplicas is the autoscaler's decision and only it writes one; with autoscaling turned off,
    # a decision left from before is removed (None deletes it in the merge patch).
    if not observed.autoscaling and observed.recorded_desired_replicas is not None:
        status["desiredReplicas"] = None
    return status
