"""The operator's I/O helpers against the real pieces: `kube` against the testbed's kube-apiserver, and
`autoscale.prometheus` against a real Prometheus scraping kwok Pods (their metrics come from a stand-in
exporter: the engines need GPUs). The controller's logic is unit-tested; these show that what it is handed
is what the apiserver and Prometheus really return."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from llm_operator import FIELD_MANAGER, kube
from llm_operator.autoscale.prometheus import MetricsUnavailable, PrometheusMetrics
from support.cluster import Cluster
from support.metrics_standin import MetricsStandIn
from support.prometheus_server import PodTargets, PrometheusServer


@pytest.fixture
def kube_client(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The helpers' client, pointed at the testbed (the kubernetes client reads $KUBECONFIG when it is
    imported, which `llm-operator run` sets first; here the file is passed instead)."""
    load = kube.config.load_kube_config
    monkeypatch.setattr(kube.config, "load_kube_config",
                        lambda **kwargs: load(config_file=cluster.kubeconfig, **kwargs))
    kube.api_client.cache_clear()
    kube.dynamic.cache_clear()
    yield
    kube.api_client.cache_clear()
    kube.dynamic.cache_clear()


def configmap(namespace: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "io", "namespace": namespace, "labels": {"app": "io"}}, "data": data}


def test_apply_owns_its_fields_and_keeps_a_users_edits(kube_client: None, cluster: Cluster, namespace: str) -> None:
    applied = kube.apply(configmap(namespace, {"a": "1"}))
    assert applied["data"] == {"a": "1"}
    managers = {entry["manager"] for entry in applied["metadata"]["managedFields"]}
    assert managers == {FIELD_MANAGER}
    cluster.kubectl("annotate", "configmap", "io", "-n", namespace, "team/owner=alice")
    cluster.kubectl("patch", "configmap", "io", "-n", namespace, "--type=merge", "-p", '{"data": {"a": "hand"}}')
    kube.apply(configmap(namespace, {"a": "1"}))
    live = kube.get("v1", "ConfigMap", namespace, "io")
    assert live is not None
    assert live["data"] == {"a": "1"}  # our field: restored
    assert live["metadata"]["annotations"]["team/owner"] == "alice"  # theirs: kept
    assert [item["metadata"]["name"] for item in kube.list_objects("v1", "ConfigMap", namespace, "app=io")] == ["io"]
    assert kube.list_objects("v1", "ConfigMap", namespace, "app=other") == []
    assert kube.get("v1", "ConfigMap", namespace, "absent") is None


def test_apply_restores_a_service_whose_port_was_edited_by_hand(
    kube_client: None, cluster: Cluster, namespace: str
) -> None:
    """An edited list key (the port number) would leave the hand-made port beside ours under apply alone."""
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "io", "namespace": namespace},
               "spec": {"selector": {"app": "io"}, "ports": [{"name": "http", "port": 8000, "targetPort": "http",
                                                               "protocol": "TCP"}]}}
    kube.apply(service)
    cluster.kubectl("patch", "service", "io", "-n", namespace, "--type=json",
                    "-p", '[{"op": "replace", "path": "/spec/ports/0/port", "value": 9000}]')
    kube.apply(service)
    ports = kube.get("v1", "Service", namespace, "io")["spec"]["ports"]
    assert [(p["name"], p["port"]) for p in ports] == [("http", 8000)]


def test_secrets_are_created_once_and_checked_without_reading_them(kube_client: None, namespace: str) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "key", "namespace": namespace},
              "type": "Opaque", "stringData": {"key": "first"}}
    assert kube.exists_metadata_only("v1", "Secret", namespace, "key") is False
    assert kube.create_if_absent(secret) is True
    assert kube.create_if_absent({**secret, "stringData": {"key": "second"}}) is False
    assert kube.exists_metadata_only("v1", "Secret", namespace, "key") is True
    stored = kube.get("v1", "Secret", namespace, "key")
    assert stored is not None and stored["data"]["key"] == "Zmlyc3Q="  # base64("first"): never overwritten


def test_status_patch_leaves_the_spec_and_events_reach_the_apiserver(
    kube_client: None, crd_installed: Cluster, namespace: str
) -> None:
    manifest = {"apiVersion": "serving.llm-operator.io/v1alpha1", "kind": "LLMService",
                "metadata": {"name": "io", "namespace": namespace},
                "spec": {"engine": "vllm", "model": {"name": "Qwen/Qwen2.5-0.5B-Instruct"}}}
    crd_installed.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    before = kube.get_llmservice(namespace, "io")
    kube.patch_llmservice_status(namespace, "io", {"phase": "Pending", "observedGeneration": 1})
    after = kube.get_llmservice(namespace, "io")
    assert after["status"]["phase"] == "Pending"
    assert after["spec"] == before["spec"] and after["metadata"]["generation"] == before["metadata"]["generation"]
    kube.post_event(after, "Warning", "IOTest", "x" * 2000)
    events = json.loads(crd_installed.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=io", "-o", "json").stdout)["items"]
    (event,) = [e for e in events if e["reason"] == "IOTest"]
    assert event["type"] == "Warning" and len(event["message"]) == 1024
    assert event["involvedObject"]["uid"] == after["metadata"]["uid"]


def kwok_pods(cluster: Cluster, namespace: str, count: int) -> list[str]:
    """`count` Running kwok Pods labelled app=io, their names."""
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "io", "namespace": namespace},
        "spec": {"replicas": count, "selector": {"matchLabels": {"app": "io"}}, "template": {
            "metadata": {"labels": {"app": "io"}},
            "spec": {"containers": [{"name": "engine", "image": "engine"}],
                     "nodeSelector": {"type": "kwok"}, "tolerations": [{"operator": "Exists"}]}}},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(deployment))
    cluster.kubectl("rollout", "status", "deployment/io", "-n", namespace, "--timeout=60s")
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", "app=io", "-o", "json").stdout)["items"]
    return sorted(p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running")


def test_prometheus_sample_adds_up_every_pods_series(
    cluster: Cluster, namespace: str, prometheus: PrometheusServer, scrape_targets: PodTargets
) -> None:
    pods = kwok_pods(cluster, namespace, 2)
    assert len(pods) == 2
    metrics = PrometheusMetrics(prometheus.url)
    with MetricsStandIn() as standin:
        standin.set(**{"sglang:num_queue_reqs": 3, "sglang:num_running_reqs": 5, "sglang:token_usage": 0.5,
                       'sglang:prompt_tokens_total{is_streaming="true"}': 0,
                       'sglang:prompt_tokens_total{is_streaming="false"}': 0})
        scrape_targets.map(namespace, "app=io", standin.address)
        deadline = time.monotonic() + 60
        sample = metrics.sample("sglang", namespace, pods, starting=1, router_pods=[])
        while sample.waiting_requests is None and time.monotonic() < deadline:
            time.sleep(1)
            sample = metrics.sample("sglang", namespace, pods, starting=1, router_pods=[])
        # Both Pods scrape the same stand-in: the queue and batch add up over the Pods, KV use is their mean.
        assert (sample.waiting_requests, sample.running_requests, sample.kv_cache_usage) == (6.0, 10.0, 0.5)
        assert (sample.ready_replicas, sample.starting_replicas) == (2, 1)
        # The prompt counter moves by 40 + 20 tokens per scrape and Pod: its irate adds both is_streaming series.
        for _ in range(30):
            standin.set(**{'sglang:prompt_tokens_total{is_streaming="true"}':
                           standin.values['sglang:prompt_tokens_total{is_streaming="true"}'] + 40,
                           'sglang:prompt_tokens_total{is_streaming="false"}':
                           standin.values['sglang:prompt_tokens_total{is_streaming="false"}'] + 20})
            time.sleep(1.0)  # half the test Prometheus' 2 s scrape interval
            rate = metrics.sample("sglang", namespace, pods, starting=0, router_pods=[]).prompt_tokens_per_s
            if rate:
                break
        assert rate is not None and rate > 0
        # A Pod the query names but Prometheus has no series for: the signal is unknown, not half of it.
        partial = metrics.sample("sglang", namespace, [*pods, "not-scraped"], starting=0, router_pods=[])
        assert partial.waiting_requests is None and partial.kv_cache_usage is None
    scrape_targets.unmap(namespace)


def test_prometheus_that_does_not_answer_raises_so_the_policy_holds() -> None:
    with pytest.raises(MetricsUnavailable):
        PrometheusMetrics("http://127.0.0.1:9", timeout=2).sample("vllm", "ns", ["p"], starting=0, router_pods=[])


@pytest.mark.parametrize(("engine", "series", "expected_prefill"), [
    # vLLM has a prefill-time histogram; SGLang's prefill is its TTFT minus its queue time.
    # vLLM's generated tokens (the KV load model's TPOT); SGLang's are not read (see engines/sglang.py).
    ("vllm", {"vllm:time_to_first_token_seconds_count": 10, "vllm:time_to_first_token_seconds_sum": 6,
              "vllm:request_prefill_time_seconds_sum": 4, "vllm:request_queue_time_seconds_sum": 2,
              "vllm:generation_tokens_total": 500}, 4 / 10),
    ("sglang", {"sglang:time_to_first_token_seconds_count": 10, "sglang:time_to_first_token_seconds_sum": 6,
                "sglang:queue_time_seconds_sum": 2, "sglang:generation_tokens_total": 500}, 4 / 10),
])
def test_prometheus_reads_the_engines_latency_histograms(
    cluster: Cluster, namespace: str, prometheus: PrometheusServer, scrape_targets: PodTargets,
    engine: str, series: dict[str, float], expected_prefill: float,
) -> None:
    """Each second every counter grows by its step: 10 first tokens, their TTFT, prefill and queue seconds."""
    pods = kwok_pods(cluster, namespace, 1)
    metrics = PrometheusMetrics(prometheus.url)
    with MetricsStandIn() as standin:
        totals = dict.fromkeys(series, 0.0)
        standin.set(**totals)
        scrape_targets.map(namespace, "app=io", standin.address)
        sample = None
        for _ in range(60):
            time.sleep(1.0)
            totals = {name: value + series[name] for name, value in totals.items()}
            standin.set(**totals)
            sample = metrics.sample(engine, namespace, pods, starting=0, router_pods=[])
            if sample.first_tokens_per_s:
                break
        assert sample is not None and sample.first_tokens_per_s
        # irate over scrapes 2 s apart of counters that grow every second: the per-second step, give or take
        # a step that landed between scrapes.
        assert sample.prefill_seconds_per_s / sample.first_tokens_per_s == pytest.approx(expected_prefill, rel=0.3)
        assert sample.queue_seconds_per_s / sample.first_tokens_per_s == pytest.approx(0.2, rel=0.3)
        if engine == "vllm":
            assert sample.generation_tokens_per_s / sample.first_tokens_per_s == pytest.approx(50, rel=0.3)
        else:
            assert sample.generation_tokens_per_s is None
    scrape_targets.unmap(namespace)
