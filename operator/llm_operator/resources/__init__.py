"""One builder per Kubernetes object of the engine (the router's are in `llm_operator.router.objects`);
`plan.desired_objects` lists all of them in apply order."""

from __future__ import annotations

from llm_operator.resources.deployment import build_deployment
from llm_operator.resources.leaderworkerset import build_leader_worker_set
from llm_operator.resources.pvc import build_pvc
from llm_operator.resources.service import build_service

__all__ = ["build_deployment", "build_leader_worker_set", "build_pvc", "build_service"]
