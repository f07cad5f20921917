"""The testbed's physical limit: a plain client applies the objects the operator would create for N
LLMServices, as fast as the apiserver takes them, with no operator, no kopf and no status.

The objects come from the operator's own pure core (`make_plan`, what `llm-operator render` prints, plus the
generated master-key Secret the operator creates beside them). They are sent with server-side apply from a
thread pool sharing one connection pool: `kubectl apply --server-side` sends one request at a time per
process and pays a process start and API discovery per chunk, while the pool keeps up to THREADS requests
in flight on open connections.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client
from kubernetes.dynamic import DynamicClient

from llm_operator.plan import make_plan
from llm_operator.router.objects import build_router_secret, generate_master_key

FIELD_MANAGER = "bench-plain-client"
THREADS = 8


def objects_for(llmservices: Iterable[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """Every object the operator would apply for these LLMServices (without owner references: no
    LLMService exists in the plain client's namespace)."""
    objects: list[dict[str, Any]] = []
    for doc in llmservices:
        doc = {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}
        plan = make_plan(doc, uid=None)
        if plan.problems or not plan.deploy:
            raise ValueError(f"{doc['metadata']['name']}: {plan.problems or 'not deployed'}")
        if plan.service is not None and plan.service.spec.router.enabled:
            secret = build_router_secret(plan.service, None, generate_master_key())
            objects += [secret] if secret else []
        objects += plan.objects
    return objects


def dynamic_client(kubeconfig: str) -> DynamicClient:
    api = client.ApiClient(configuration(kubeconfig))
    return DynamicClient(api)


def configuration(kubeconfig: str) -> client.Configuration:
    from kubernetes import config

    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = THREADS * 2  # one open connection per thread, watches besides
    return configuration


def apply_all(dynamic: DynamicClient, objects: list[dict[str, Any]]) -> None:
    """Server-side apply of every object, THREADS at a time; the first error is raised."""
    resources = {(o["apiVersion"], o["kind"]): dynamic.resources.get(api_version=o["apiVersion"], kind=o["kind"])
                 for o in objects}

    def apply(manifest: dict[str, Any]) -> None:
        dynamic.server_side_apply(resources[manifest["apiVersion"], manifest["kind"]], body=manifest,
                                  namespace=manifest["metadata"]["namespace"], field_manager=FIELD_MANAGER,
                                  force_conflicts=True)

    with ThreadPoolExecutor(THREADS, thread_name_prefix="plain-client") as pool:
        for _ in pool.map(apply, objects):
            pass
