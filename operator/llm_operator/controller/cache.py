"""The Deployments and Pods the operator manages, as its watches last saw them.

Status and the autoscaler read them here instead of asking the apiserver on every resync, so an idle
operator costs the apiserver almost nothing (bench/operator_scale). kopf's watches on objects labelled
managed-by=llm-operator feed it, their initial listing included. A read the cache cannot answer yet
(right after a restart, before a watch has listed everything) goes to the apiserver: a Deployment the
cache has not seen, or the Pods of a Deployment that says it has some while the cache holds none.

It keeps what those readers use: metadata, status, and a Deployment's spec without its Pod template. The
template, a Pod's spec and every object's managedFields are left out: a Deployment or Pod kept whole is
44-50 KiB of Python objects, slim 8-9 KiB, and with 1000 LLMServices the cache holds 2000 of each
(bench/operator_scale).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from kubernetes.dynamic.exceptions import ResourceNotFoundError

from llm_operator import kube
from llm_operator.resources.leaderworkerset import API_VERSION as LWS_API_VERSION
from llm_operator.resources.leaderworkerset import KIND as LWS_KIND

Key = tuple[str, str, str]  # (kind, namespace, name)


def slim(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a watched object that status and the autoscaler read (see the module's docstring)."""
    copy: dict[str, Any] = {key: obj[key] for key in ("apiVersion", "kind", "status") if key in obj}
    copy["metadata"] = {key: value for key, value in (obj.get("metadata") or {}).items() if key != "managedFields"}
    if obj.get("kind") != "Pod" and "spec" in obj:
        copy["spec"] = {key: value for key, value in obj["spec"].items() if key not in POD_TEMPLATES}
    return copy


POD_TEMPLATES = ("template", "leaderWorkerTemplate")  # a Deployment's, a LeaderWorkerSet's


INSTANCE = "app.kubernetes.io/instance"
Group = tuple[str, str, str]  # (kind, namespace, instance label)


def _group(key: Key, obj: Mapping[str, Any]) -> Group:
    return key[0], key[1], str((obj["metadata"].get("labels") or {}).get(INSTANCE, ""))


class WatchCache:
    def __init__(self) -> None:
        self._objects: dict[Key, dict[str, Any]] = {}
        # The keys by instance label: every status refresh selects one LLMService's Pods, and a scan of all
        # cached objects made a burst of N LLMServices cost O(N^2) (bench/operator_scale's profile).
        self._groups: dict[Group, set[Key]] = {}
        self._lock = threading.Lock()

    def update(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """One watch event: DELETED forgets the object; any other (ADDED, MODIFIED, the initial
        listing's None) stores a slim copy (`slim`)."""
        meta = obj.get("metadata") or {}
        key = (str(obj.get("kind", "")), str(meta.get("namespace", "")), str(meta.get("name", "")))
        with self._lock:
            old = self._objects.pop(key, None)
            if old is not None:
                self._groups.get(_group(key, old), set()).discard(key)
            if event_type != "DELETED":
                self._objects[key] = copy = slim(obj)
                self._groups.setdefault(_group(key, copy), set()).add(key)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects.get((kind, namespace, name))

    def select(self, kind: str, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """Objects of `kind` in `namespace` whose labels include all of `labels`."""
        with self._lock:
            if INSTANCE in labels:
                keys = self._groups.get((kind, namespace, labels[INSTANCE]), set())
                objects = [self._objects[key] for key in sorted(keys)]
            else:
                objects = [o for (k, ns, _), o in self._objects.items() if k == kind and ns == namespace]
        return [o for o in objects
                if all((o["metadata"].get("labels") or {}).get(key) == value for key, value in labels.items())]

    def __len__(self) -> int:
        return len(self._objects)


watched = WatchCache()


def deployment(namespace: str, name: str) -> dict[str, Any] | None:
    cached = watched.get("Deployment", namespace, name)
    return cached if cached is not None else kube.get("apps/v1", "Deployment", namespace, name)


def leader_worker_set(namespace: str, name: str) -> dict[str, Any] | None:
    cached = watched.get(LWS_KIND, namespace, name)
    if cached is not None:
        return cached
    try:
        return kube.get(LWS_API_VERSION, LWS_KIND, namespace, name)
    except ResourceNotFoundError:  # LeaderWorkerSet is not installed: nothing was created
        return None


def workload(namespace: str, name: str, several_nodes: bool) -> dict[str, Any] | None:
    """The engine's Deployment, or its LeaderWorkerSet when a replica spans several nodes."""
    return leader_worker_set(namespace, name) if several_nodes else deployment(namespace, name)


def pods(namespace: str, labels: Mapping[str, str], owner: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The Pods with `labels`; `owner` (their Deployment) says whether an empty answer is to be trusted."""
    found = watched.select("Pod", namespace, labels)
    if not found and owner is not None and ((owner.get("status") or {}).get("replicas") or 0) > 0:
        selector = ",".join(f"{key}={value}" for key, value in labels.items())
        return kube.list_objects("v1", "Pod", namespace, selector)
    return found


# Secrets are not watched (a watch would deliver their values); whether one exists is asked by name,
# metadata only. A Secret found is believed for SECRET_FOUND_TTL_S; a missing one is asked again at every
# reconcile, so one created later is noticed at the next resync.
SECRET_FOUND_TTL_S = 300.0
_secrets_found: dict[tuple[str, str], float] = {}


def secret_exists(namespace: str, name: str) -> bool:
    key = (namespace, name)
    found_at = _secrets_found.get(key)
    if found_at is not None and time.monotonic() - found_at < SECRET_FOUND_TTL_S:
        return True
    if kube.exists_metadata_only("v1", "Secret", namespace, name):
        _secrets_found[key] = time.monotonic()
        return True
    _secrets_found.pop(key, None)
    return False
