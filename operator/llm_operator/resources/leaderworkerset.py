"""The engine LeaderWorkerSet `<name>`, for a model served across nodes (resources.nodes > 1).

LeaderWorkerSet (kubernetes-sigs/lws, leaderworkerset.x-k8s.io/v1) makes each replica a group of one
leader Pod and nodes-1 worker Pods that are created, restarted and scaled together. The leader runs the
engine's API server and the first pipeline stage; the workers join its engine and serve nothing. The
engine Service `<name>` selects the leaders (resources/service.py), so the router reaches only them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from llm_operator.api.models import LLMService
from llm_operator.engines import container_for
from llm_operator.resources.common import LEADER_ROLE, WORKER_ROLE, metadata, selector_labels
from llm_operator.resources.deployment import engine_pod_template, replicas

API_VERSION = "leaderworkerset.x-k8s.io/v1"
KIND = "LeaderWorkerSet"
# Set by LWS's Pod webhook on every Pod of a group, the same value within a group and a different one
# across groups: anti-affinity keyed on it keeps a group's Pods on distinct nodes while groups may share.
GROUP_KEY_LABEL = "leaderworkerset.sigs.k8s.io/group-key"
HOSTNAME = "kubernetes.io/hostname"


def group_anti_affinity(service: LLMService) -> dict[str, Any]:
    """The user's affinity, plus: no two Pods of one group on the same node (each stage holds a node's
    GPUs; two on one node would not be the layout the fit check sized)."""
    affinity = dict(service.spec.resources.affinity or {})
    anti = dict(affinity.get("podAntiAffinity") or {})
    anti["requiredDuringSchedulingIgnoredDuringExecution"] = [
        *(anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []),
        {
            "topologyKey": HOSTNAME,
            "labelSelector": {"matchLabels": selector_labels(service)},
            "matchLabelKeys": [GROUP_KEY_LABEL],
        },
    ]
    affinity["podAntiAffinity"] = anti
    return affinity


def build_leader_worker_set(
    service: LLMService, uid: str | None, autoscaled_replicas: int | None = None
) -> dict[str, Any]:
    engine = container_for(service)
    assert engine.worker_args is not None, "a multi-node engine gives its workers' arguments"
    affinity = group_anti_affinity(service)
    leader = engine_pod_template(service, engine, role=LEADER_ROLE, affinity=affinity)
    worker = engine_pod_template(service, replace(engine, args=engine.worker_args), role=WORKER_ROLE,
                                 affinity=affinity, serves_api=False)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata(service, service.metadata.name or "", uid),
        "spec": {
            # Groups; the autoscaler also writes it through the scale subresource.
            "replicas": replicas(service, autoscaled_replicas),
            # Workers start with the leader: vLLM's leader waits for every node of its group to join.
            "startupPolicy": "LeaderCreated",
            # As the Deployment: one spare group at a time, never fewer ready groups than wanted.
            "rolloutStrategy": {
                "type": "RollingUpdate",
                "rollingUpdateConfiguration": {"maxSurge": 1, "maxUnavailable": 0},
            },
            # One headless Service per group, named after its leader Pod (<name>-<group>): with the default
            # policy LWS names its one headless Service <name>, the engine Service's name, and skips creating
            # it when ours exists, so no leader address would resolve.
            "networkConfig": {"subdomainPolicy": "UniquePerReplica"},
            "leaderWorkerTemplate": {
                "size": service.spec.resources.nodes,
                # A failed Pod takes its group down and up again: the engine cannot lose a stage and go on.
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": leader,
                "workerTemplate": worker,
            },
        },
    }
