"""Thin helpers around the kubernetes client: server-side apply, status patches, reads.

Every write goes through `apply` with one field manager, so `kubectl get -o yaml
--show-managed-fields` shows exactly which fields the operator owns, and a user's edits to
fields it does not own (for example an annotation added by hand) survive its reconciles.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import threading
import time
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ConflictError, NotFoundError, UnprocessibleEntityError

from llm_operator import FIELD_MANAGER, GROUP, PLURAL, VERSION, metrics

_lock = threading.Lock()
# kopf's handler threads (handlers.configure sets max_workers to 20), the two loops, and some slack.
CONNECTIONS = 32


@functools.cache
def api_client() -> client.ApiClient:
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    # One open connection per thread that calls the apiserver: kopf's handler threads
    # (settings.execution.max_workers) and the resync and autoscaling loops. The client's default (5 per
    # CPU: 10 on 2 cores) made urllib3 discard connections during a burst, and every new one costs a TLS
    # handshake on both ends (bench/operator_scale).
    configuration.connection_pool_maxsize = CONNECTIONS
    return client.ApiClient(configuration)


@functools.cache
def dynamic() -> DynamicClient:
    with _lock:
        return DynamicClient(api_client())


def _resource(api_version: str, kind: str):
    return dynamic().resources.get(api_version=api_version, kind=kind)


def _server_side_apply(manifest: dict[str, Any]) -> dict[str, Any]:
    """The apply body is sent as UTF-8 JSON (YAML's subset): the client's own serializer escapes a character
    outside the Basic Multilingual Plane as a surrogate pair (\\ud83e\\udd99), which the apiserver's YAML
    decoder refuses, so an emoji in a served name would fail every apply."""
    resource = _resource(manifest["apiVersion"], manifest["kind"])
    meta = manifest["metadata"]
    path = resource.path(name=meta["name"], namespace=meta.get("namespace"))
    body = json.dumps(manifest, ensure_ascii=False).encode()
    result = dynamic().request("patch", path, body=body, content_type="application/apply-patch+yaml",
                               field_manager=FIELD_MANAGER, force_conflicts=True)
    return result.to_dict()


def contains(live: Any, desired: Any) -> bool:
    """Whether every field of `desired` has the same value in `live` (lists item by item)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and contains(live[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(map(contains, live, desired))
    return live == desired


def apply(manifest: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply under the operator's field manager, taking ownership on conflict.

    Apply cannot undo every hand edit: an edit that changes a list item's key (a Service port
    number) adds an item another manager owns, which apply keeps, and the object may become
    invalid. Then a merge patch, which replaces lists whole, restores our version first."""
    metrics.apply_requests.labels(manifest["kind"]).inc()
    try:
        result = _server_side_apply(manifest)
    except UnprocessibleEntityError:
        result = None
    if result is None or not contains(result, manifest):
        resource = _resource(manifest["apiVersion"], manifest["kind"])
        dynamic().patch(
            resource, body=manifest, name=manifest["metadata"]["name"],
            namespace=manifest["metadata"].get("namespace"),
            content_type="application/merge-patch+json", field_manager=FIELD_MANAGER,
        )
        result = _server_side_apply(manifest)
    return result


def create(manifest: dict[str, Any]) -> dict[str, Any]:
    resource = _resource(manifest["apiVersion"], manifest["kind"])
    return dynamic().create(resource, body=manifest, namespace=manifest["metadata"].get("namespace"),
                            field_manager=FIELD_MANAGER).to_dict()


def replace(manifest: dict[str, Any]) -> dict[str, Any]:
    """PUT: with metadata.resourceVersion set, it fails with a conflict if the object changed since read."""
    resource = _resource(manifest["apiVersion"], manifest["kind"])
    return dynamic().replace(resource, body=manifest, namespace=manifest["metadata"].get("namespace"),
                             field_manager=FIELD_MANAGER).to_dict()


def get(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return _resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
    except NotFoundError:
        return None


def scale(api_version: str, kind: str, namespace: str, name: str, replicas: int) -> None:
    """Set the replica count through the scale subresource, as `kubectl scale` and an HPA do."""
    resource = _resource(api_version, kind).subresources["scale"]
    dynamic().patch(resource, body={"spec": {"replicas": replicas}}, name=name, namespace=namespace,
                    content_type="application/merge-patch+json", field_manager=FIELD_MANAGER)


def list_objects(api_version: str, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
    items = _resource(api_version, kind).get(namespace=namespace, label_selector=label_selector)
    return [item.to_dict() for item in items.items]


def patch_llmservice_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    """Merge-patch the status subresource; the spec is never written."""
    client.CustomObjectsApi(api_client()).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": status}
    )


def exists_metadata_only(api_version: str, kind: str, namespace: str, name: str) -> bool:
    """Whether an object exists, asking for its metadata only: for Secrets this means the
    operator learns that a referenced Secret is there without ever receiving its values."""
    resource = _resource(api_version, kind)
    try:
        dynamic().request(
            "get", resource.path(name=name, namespace=namespace),
            header_params={"Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"},
        )
    except NotFoundError:
        return False
    return True


def create_if_absent(manifest: dict[str, Any]) -> bool:
    """Create once; an existing object is left exactly as it is (True when created)."""
    resource = _resource(manifest["apiVersion"], manifest["kind"])
    try:
        dynamic().create(resource, body=manifest, namespace=manifest["metadata"].get("namespace"),
                         field_manager=FIELD_MANAGER)
    except ConflictError:
        return False
    return True


def get_llmservice(namespace: str, name: str) -> dict[str, Any] | None:
    return get(f"{GROUP}/{VERSION}", "LLMService", namespace, name)


def post_event(obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
    """A core/v1 Event about `obj`. Posted directly rather than through kopf, whose event
    queue exists only inside its handlers, not in the operator's own loops."""
    meta = obj["metadata"]
    now = datetime.datetime.now(datetime.UTC).isoformat()
    event = {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion", f"{GROUP}/{VERSION}"), "kind": obj.get("kind", "LLMService"),
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid"),
        },
        "type": type_, "reason": reason, "message": message[:1024],
        "source": {"component": FIELD_MANAGER},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        "reportingComponent": FIELD_MANAGER, "reportingInstance": FIELD_MANAGER,
    }
    _post_with_retries(meta["namespace"], event)


# Seconds to wait before the second and third attempt of an Event, and each attempt's own limit: a stalled
# apiserver answers 504 only after its 60 s request timeout, which would hold the loop that posts.
EVENT_RETRY_DELAYS: tuple[float, ...] = (1.0, 3.0)
EVENT_REQUEST_TIMEOUT = 10.0
_log = logging.getLogger(__name__)


def _post_with_retries(namespace: str, event: dict[str, Any]) -> None:
    """Events are informational, as in client-go's recorder: a transient failure (5xx, 429, a dropped
    connection) is retried, and a lost Event is logged instead of raised, so the decision it reports (already
    in status) is not undone by an exception in the middle of an autoscaling tick."""
    for delay in (*EVENT_RETRY_DELAYS, None):
        try:
            client.CoreV1Api(api_client()).create_namespaced_event(
                namespace, event, _request_timeout=EVENT_REQUEST_TIMEOUT)
            return
        except client.ApiException as error:
            transient = error.status is not None and (error.status >= 500 or error.status == 429)
            failure = f"HTTP {error.status} {error.reason}"
        except (urllib3.exceptions.HTTPError, OSError) as error:
            transient, failure = True, type(error).__name__
        if not transient or delay is None:
            break
        time.sleep(delay)
    _log.warning("Event %s about %s/%s not posted: %s", event["reason"], namespace,
                 event["involvedObject"]["name"], failure)
