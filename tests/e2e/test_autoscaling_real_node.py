"""Autoscaling on real Pods: load through the router's Service scales a vLLM LLMService from 1 to 2
replicas, and the second engine Pod serves requests.

Everything runs for real on the testbed's real node: the operator's generated engine Pods (vLLM 0.32.0's
CPU build standing in for vllm/vllm-openai:v0.32.0) and router Pod (LiteLLM 1.108.7 from the hash-pinned
lock standing in for ghcr.io/berriai/litellm-non_root:v1.108.7), a real Prometheus on loopback scraping
each engine Pod at its own Pod IP (the way Pod discovery would), and the `openai` client on the router's
ClusterIP. The engine takes one sequence at a time (spec.serving.maxConcurrentRequests) and every request
generates 256 tokens, so 8 clients make a real queue in vLLM's own `vllm:num_requests_waiting` (with
short requests the router's CPU, not the engine, is what limits this 2-core machine)."""

from __future__ import annotations

from pathlib import Path

from e2e.test_autoscaling import Load, status, wait_replicas
from e2e.test_serving_real_node import cpu_vllm, deploy, engine_pods, router_client, served_requests
from support.cluster import OperatorProcess, condition
from support.prometheus_server import PodTargets

ENGINE_PORT = 8000


def test_load_through_the_router_scales_real_pods_and_the_new_pod_serves(
    operator: OperatorProcess, real_node: str, namespace: str, images: dict[str, str], tiny_model: Path,
    tmp_path: Path, volumes: list[str], scrape_targets: PodTargets,
) -> None:
    cluster = operator.cluster
    body = cpu_vllm("scaled", images, autoscaling={
        # The queue on this shared 2-core machine hovers at 2-5 (the router and the clients share the CPU);
        # a target of 1 keeps the test about the scaling, not about where the threshold falls. The delay
        # outlasts the second Pod's start under load (2-3 minutes here).
        "enabled": True, "minReplicas": 1, "maxReplicas": 2, "targetQueueDepth": 1,
        "scaleDownDelaySeconds": 600,
    })
    serving = body["spec"]["serving"]
    serving["maxConcurrentRequests"] = 1
    # One compute thread per engine: two engines, the router, the clients and the control plane share
    # this machine's 2 cores (with two spinning OpenMP threads per engine the apiserver timed out).
    serving["env"].append({"name": "OMP_NUM_THREADS", "value": "1"})
    # Both replicas share the seeded ReadWriteOnce volume: the real node is one node.
    deploy(cluster, namespace, [body], tiny_model, tmp_path, volumes)
    scrape_targets.map_pod_ips(namespace, "app.kubernetes.io/instance=scaled,app.kubernetes.io/component=engine",
                               ENGINE_PORT)
    [first] = engine_pods(cluster, namespace, "scaled")
    client = router_client(cluster, namespace, "scaled")

    with Load(str(client.base_url), "scaled", workers=8, max_tokens=256, limit_s=420, api_key=client.api_key) as load:
        up = wait_replicas(cluster, namespace, "scaled", 2, timeout=180)
        reason = status(cluster, namespace, "scaled")["scaleReason"]
        print(f"scale-up 1 -> 2: {up:.1f}s after load started; {reason}")
        assert "queue" in reason

        def second_pod_ready() -> dict | None:
            return next((p for p in engine_pods(cluster, namespace, "scaled")
                         if p["metadata"]["name"] != first["metadata"]["name"]
                         and condition(p, "Ready").get("status") == "True"), None)

        second = cluster.wait_for("the second engine Pod, Ready", second_pod_ready, timeout=420, interval=2)
        assert second["spec"]["nodeName"] == real_node
        # The router sends new requests to the new replica too (a connection per request: the engine
        # Service spreads them), while the load goes on.
        cluster.wait_for("the second Pod to serve requests", lambda: served_requests(second) >= 3,
                         timeout=120, interval=2)
        done_before = load.done
    print(f"first Pod served {served_requests(first):.0f}, second Pod {served_requests(second):.0f}; "
          f"{load.done} requests in all ({load.done - done_before} after the second Pod was serving)")
    assert served_requests(first) > 0
    scrape_targets.unmap(namespace)
