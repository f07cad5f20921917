"""The RouterReady condition: what the router cannot find, and whether its Pods are ready."""

from __future__ import annotations

from llm_operator.router.config import missing_references


def router_status(
    missing: list[str], ready_replicas: int | None = None, wanted_replicas: int | None = None
) -> tuple[str, str, str]:
    """(status, reason, message) of the RouterReady condition.

    `missing` comes from `missing_references`; `ready_replicas`/`wanted_replicas` from the router
    Deployment (status.readyReplicas, spec.replicas); None when not known (not read yet)."""
    if missing:
        return ("False", "FallbackMissing",
                "router serves the local model; missing, left out of the router until it exists: "
                + ", ".join(missing))
    if ready_replicas is None or wanted_replicas is None:
        return ("Unknown", "RouterProgressing", "router Deployment not observed yet")
    if ready_replicas < max(wanted_replicas, 1):
        return ("False", "RouterProgressing", f"router replicas ready: {ready_replicas}/{wanted_replicas}")
    return ("True", "RouterReady", f"router replicas ready: {ready_replicas}/{wanted_replicas}")


__all__ = ["missing_references", "router_status"]
