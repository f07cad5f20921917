"""Autoscaling end to end: the operator, a real Prometheus, the control plane, and load.

What answers for the kwok Pods (kwok runs no containers): each engine Pod is one Prometheus
target with that Pod's namespace and pod labels, pointing at a local process:
- a REAL vLLM on the CPU (tiny generated Llama, --max-num-seqs 2 so requests queue) for the
  queue-depth scenario: every replica of the LLMService is mapped to the same server, so
  waiting requests per ready replica is the real server's queue;
- a stand-in exporter (tests/support/metrics_standin.py) for what cannot be produced here:
  KV-cache pressure held at a level, TGI's queue and DCGM's GPU utilization (no GPU, no TGI);
- the REAL LiteLLM proxy's `litellm_in_flight_requests` for Ollama (which has no metrics),
  in front of a slow OpenAI-compatible stand-in engine.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from collections.abc import Iterator

import openai
import pytest
import yaml

from support.cluster import Cluster, OperatorProcess
from support.metrics_standin import MetricsStandIn
from support.prometheus_server import PodTargets, PrometheusServer

INTERVAL = 2  # the operator fixture's --autoscale-interval
SCALE_DOWN_DELAY = 30
ENGINE = "app.kubernetes.io/component=engine"
ROUTER = "app.kubernetes.io/component=router"


def autoscaled(name: str, engine: str = "vllm", **autoscaling: object) -> dict:
    spec: dict = {
        "engine": engine,
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct", "parameters": "8B"},
        "resources": {"gpus": 1, "gpuProduct": "NVIDIA-H100-80GB-HBM3"},
        "autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 3, "targetQueueDepth": 5,
                        "scaleDownDelaySeconds": SCALE_DOWN_DELAY, **autoscaling},
    }
    if engine == "ollama":
        spec["model"] = {"name": "qwen2.5:0.5b"}
        spec["resources"] = {"gpus": 0}
        spec["serving"] = {"maxConcurrentRequests": 1}
    return {"apiVersion": "serving.llm-operator.io/v1alpha1", "kind": "LLMService",
            "metadata": {"name": name}, "spec": spec}


def get(cluster: Cluster, namespace: str, kind: str, name: str) -> dict:
    return json.loads(cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)


def status(cluster: Cluster, namespace: str, name: str) -> dict:
    return get(cluster, namespace, "llms", name).get("status") or {}


def condition(cluster: Cluster, namespace: str, name: str, type_: str) -> dict:
    return next((c for c in status(cluster, namespace, name).get("conditions", []) if c["type"] == type_), {})


def create(cluster: Cluster, namespace: str, manifest: dict) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))
    name = manifest["metadata"]["name"]
    cluster.kubectl("wait", "--for=condition=Ready", f"llms/{name}", "-n", namespace, "--timeout=120s")


def wait_replicas(cluster: Cluster, namespace: str, name: str, replicas: int, timeout: float) -> float:
    """Seconds until status.desiredReplicas and the Deployment both reach `replicas`."""
    started = time.monotonic()
    try:
        cluster.wait_for(
            f"{name} at {replicas} replicas",
            lambda: status(cluster, namespace, name).get("desiredReplicas") == replicas
            and get(cluster, namespace, "deployment", name)["spec"]["replicas"] == replicas,
            timeout=timeout, interval=0.5,
        )
    except AssertionError as error:
        scaling = condition(cluster, namespace, name, "ScalingActive")
        raise AssertionError(f"{error}; ScalingActive: {scaling}") from None
    return time.monotonic() - started


def scale_events(cluster: Cluster, namespace: str, name: str) -> list[str]:
    events = json.loads(cluster.kubectl(
        "get", "events", "-n", namespace, "-o", "json",
        "--field-selector", f"involvedObject.name={name},reason=Scaled,type=Normal",
    ).stdout)["items"]
    return [e["message"] for e in events]


class Load:
    """A bounded closed-loop load: `workers` clients each sending one request after another."""

    def __init__(self, base_url: str, model: str, workers: int, max_tokens: int = 160, limit_s: float = 240,
                 api_key: str = "none") -> None:
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=120, max_retries=0)
        self.model, self.workers, self.max_tokens, self.limit_s = model, workers, max_tokens, limit_s
        self.stop = threading.Event()
        self.pool = concurrent.futures.ThreadPoolExecutor(workers)
        self.done = 0
        self.errors = 0

    def _worker(self) -> None:
        deadline = time.monotonic() + self.limit_s
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                self.client.chat.completions.create(
                    model=self.model, max_tokens=self.max_tokens,
                    # Every request generates max_tokens (the tiny model's random weights would stop at
                    # random): each holds a slot long enough for 32 Python clients to keep a queue,
                    # however fast the engine is compared with the clients.
                    extra_body={"ignore_eos": True},
                    messages=[{"role": "user", "content": "tell me a long story"}],
                )
                self.done += 1
            except openai.APIConnectionError:
                # A kept-alive connection the server closed between requests: a client-side hiccup.
                self.errors += 1

    def __enter__(self) -> Load:
        self.futures = [self.pool.submit(self._worker) for _ in range(self.workers)]
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for future in self.futures:
            future.result(timeout=180)
        self.pool.shutdown()
        print(f"load: {self.done} requests done, {self.errors} connection errors")
        assert self.errors <= max(2, self.done // 20), "the engine failed under load"


@pytest.fixture(scope="module")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from support.vllm_server import VLLMServer, make_tiny_model, vllm_python

    tmp = tmp_path_factory.mktemp("vllm")
    python = vllm_python()
    with VLLMServer(make_tiny_model(tmp / "model", python=python), "tiny", max_num_seqs=2, python=python,
                    log_dir=tmp) as server:
        yield server


def test_queue_scales_up_to_max_then_down_after_the_delay(
    operator: OperatorProcess, cluster: Cluster, namespace: str, scrape_targets: PodTargets, vllm
) -> None:
    # The tiny CPU model answers fast, so the real queue swings between 0 and ~30 waiting requests and
    # its 30 s mean was 3-6 in runs here (3.2 in a fresh CI-like run, which a target of 2 turned into
    # 2 replicas, not 3): a target of 1 keeps the test about the policy, not about the machine.
    # The queue signal alone: the TTFT target (on by default) would hold the scale-down until it has
    # 15 minutes of the engine's latency history, longer than this test.
    create(cluster, namespace, autoscaled("queue", targetQueueDepth=1, targetTimeToFirstTokenSeconds=0))
    scrape_targets.map(namespace, f"app.kubernetes.io/instance=queue,{ENGINE}", vllm.base_url.split("//")[1])

    with Load(vllm.openai_base_url, "tiny", workers=32):
        # Each interval may add what the queue asks for; the window's mean lags the queue, so
        # allow 60 intervals on this shared 2-core machine (measured: 5 to 23; one CI run, the suite's first
        # test on a cold machine, needed more than 30).
        up = wait_replicas(cluster, namespace, "queue", 3, timeout=60 * INTERVAL)
        print(f"scale-up 1 -> 3: {up:.1f}s after load started ({up / INTERVAL:.1f} intervals of {INTERVAL}s)")
        reason = status(cluster, namespace, "queue")["scaleReason"]
        assert "queue" in reason
    stopped = time.monotonic()
    # Within the delay the replicas stay; the scale-down waits for SCALE_DOWN_DELAY of low demand.
    time.sleep(SCALE_DOWN_DELAY - 2 * INTERVAL)
    assert status(cluster, namespace, "queue")["desiredReplicas"] == 3, "scaled down before the delay"
    wait_replicas(cluster, namespace, "queue", 1, timeout=90)
    down = time.monotonic() - stopped
    print(f"scale-down 3 -> 1: {down:.1f}s after load stopped (delay {SCALE_DOWN_DELAY}s)")
    assert down >= SCALE_DOWN_DELAY
    events = scale_events(cluster, namespace, "queue")
    assert any("to 3 replicas" in m for m in events) and any("to 1 replicas" in m for m in events), events
    assert status(cluster, namespace, "queue")["lastScaleTime"]
    scrape_targets.unmap(namespace)


def test_prometheus_down_holds_replicas_and_says_why(
    operator: OperatorProcess, cluster: Cluster, namespace: str, scrape_targets: PodTargets,
    prometheus: PrometheusServer,
) -> None:
    with MetricsStandIn() as standin:
        # Six waiting per replica against a target of five: two replicas (the most allowed).
        standin.set(**{"vllm:num_requests_waiting": 6, "vllm:num_requests_running": 2,
                       "vllm:kv_cache_usage_perc": 0.3})
        create(cluster, namespace, autoscaled("held", maxReplicas=2, scaleDownDelaySeconds=6))
        scrape_targets.map(namespace, f"app.kubernetes.io/instance=held,{ENGINE}", standin.address)
        wait_replicas(cluster, namespace, "held", 2, timeout=60)
        prometheus.stop()
        standin.set(**{"vllm:num_requests_waiting": 0})  # demand falls while nobody can see it
        try:
            held = cluster.wait_for(
                "ScalingActive=False", lambda: (c := condition(cluster, namespace, "held", "ScalingActive"))
                and c["status"] == "False" and c, timeout=30)
            assert held["reason"] == "MetricsUnavailable", held
            assert "holding 2 replicas" in held["message"] and "Prometheus" in held["message"], held
            time.sleep(6 + 3 * INTERVAL)  # longer than the scale-down delay: still no scale-down
            assert get(cluster, namespace, "deployment", "held")["spec"]["replicas"] == 2
        finally:
            prometheus.start()
        # Metrics are back and show no queue: the delay passes and it scales down.
        wait_replicas(cluster, namespace, "held", 1, timeout=90)
        assert condition(cluster, namespace, "held", "ScalingActive")["status"] == "True"
    scrape_targets.unmap(namespace)


def test_kv_cache_pressure_alone_scales_vllm_up(
    operator: OperatorProcess, cluster: Cluster, namespace: str, scrape_targets: PodTargets
) -> None:
    with MetricsStandIn() as standin:
        standin.set(**{"vllm:num_requests_waiting": 0, "vllm:num_requests_running": 3,
                       "vllm:kv_cache_usage_perc": 0.2})
        create(cluster, namespace, autoscaled("kv", targetKVCacheUsage=0.8))
        scrape_targets.map(namespace, f"app.kubernetes.io/instance=kv,{ENGINE}", standin.address)
        time.sleep(4 * INTERVAL)
        assert status(cluster, namespace, "kv")["desiredReplicas"] == 1
        standin.set(**{"vllm:kv_cache_usage_perc": 0.97})
        wait_replicas(cluster, namespace, "kv", 2, timeout=60)
        assert "KV" in status(cluster, namespace, "kv")["scaleReason"] or "kv" in status(
            cluster, namespace, "kv")["scaleReason"]
    scrape_targets.unmap(namespace)


def test_gpu_utilization_alone_scales_tgi_up(
    operator: OperatorProcess, cluster: Cluster, namespace: str, scrape_targets: PodTargets
) -> None:
    with MetricsStandIn() as standin:
        standin.set(tgi_queue_size=0, tgi_batch_current_size=2, DCGM_FI_DEV_GPU_UTIL=40)
        create(cluster, namespace, autoscaled("gpu", engine="tgi", targetGPUUtilization=80))
        scrape_targets.map(namespace, f"app.kubernetes.io/instance=gpu,{ENGINE}", standin.address)
        time.sleep(4 * INTERVAL)
        assert status(cluster, namespace, "gpu")["desiredReplicas"] == 1
        standin.set(DCGM_FI_DEV_GPU_UTIL=98)
        wait_replicas(cluster, namespace, "gpu", 2, timeout=60)
        assert "gpu utilization" in status(cluster, namespace, "gpu")["scaleReason"].lower()
    scrape_targets.unmap(namespace)


def test_sglang_scales_on_its_own_metrics(
    operator: OperatorProcess, cluster: Cluster, namespace: str, scrape_targets: PodTargets
) -> None:
    """engine: sglang reads sglang:token_usage and sglang:num_queue_reqs (names from the descriptor) through a
    real Prometheus. A stand-in exports them: SGLang needs a GPU (no CPU build runs here). Its token counter
    has one series per is_streaming value, as SGLang's has."""
    with MetricsStandIn() as standin:
        standin.set(**{"sglang:num_queue_reqs": 0, "sglang:num_running_reqs": 2, "sglang:token_usage": 0.2,
                       'sglang:prompt_tokens_total{is_streaming="true"}': 100,
                       'sglang:prompt_tokens_total{is_streaming="false"}': 50})
        create(cluster, namespace, autoscaled("sg", engine="sglang"))
        scrape_targets.map(namespace, f"app.kubernetes.io/instance=sg,{ENGINE}", standin.address)
        time.sleep(4 * INTERVAL)
        assert status(cluster, namespace, "sg")["desiredReplicas"] == 1
        standin.set(**{"sglang:token_usage": 0.97})
        wait_replicas(cluster, namespace, "sg", 2, timeout=60)
        assert "kv" in status(cluster, namespace, "sg")["scaleReason"].lower()
        standin.set(**{"sglang:token_usage": 0.2, "sglang:num_queue_reqs": 12})
        wait_replicas(cluster, namespace, "sg", 3, timeout=60)
        assert "queue" in status(cluster, namespace, "sg")["scaleReason"].lower()
    scrape_targets.unmap(namespace)


def test_ollama_scales_on_the_router_signal(
    operator: OperatorProcess, cluster: Cluster, namespace: str, scrape_targets: PodTargets, tmp_path
) -> None:
    from e2e.test_router_proxy import Proxy, StandIn, install_litellm, loopback_config, stop
    from llm_operator.plan import make_plan

    manifest = autoscaled("ol", engine="ollama")
    create(cluster, namespace, manifest)
    service = make_plan({**manifest, "metadata": {"name": "ol", "namespace": namespace}}, None).service
    engine = StandIn(tmp_path, "ollama", "qwen2.5:0.5b", mode="slow", delay=45)
    proxy = None
    try:
        proxy = Proxy(install_litellm(), tmp_path, loopback_config(service, {}, {"ol": engine.url}), {})
        scrape_targets.map(namespace, f"app.kubernetes.io/instance=ol,{ROUTER}", proxy.url.split("//")[1],
                           metrics_path="/metrics/")
        time.sleep(4 * INTERVAL)
        assert status(cluster, namespace, "ol")["desiredReplicas"] == 1
        # 20 in flight, one parallel slot per replica: 19 waiting on one replica -> the maximum, 3.
        client = proxy.client(timeout=120)
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            futures = [pool.submit(client.chat.completions.create, model="ol", max_tokens=8,
                                   messages=[{"role": "user", "content": "hi"}]) for _ in range(20)]
            wait_replicas(cluster, namespace, "ol", 3, timeout=60)
            for future in futures:
                future.result(timeout=120)
        assert "queue" in status(cluster, namespace, "ol")["scaleReason"]
    finally:
        if proxy is not None:
            stop(proxy.process)
        stop(engine.process)
    scrape_targets.unmap(namespace)


def test_a_recreated_llmservice_starts_afresh(
    operator: OperatorProcess, cluster: Cluster, namespace: str, scrape_targets: PodTargets
) -> None:
    """Delete an autoscaled LLMService at 3 replicas and create one with the same name: the new one is a
    new object (a new uid) and starts at its own minReplicas, not at the count of the one deleted."""
    with MetricsStandIn() as standin:
        standin.set(**{"vllm:num_requests_waiting": 30, "vllm:num_requests_running": 2,
                       "vllm:kv_cache_usage_perc": 0.3})
        create(cluster, namespace, autoscaled("again"))
        scrape_targets.map(namespace, f"app.kubernetes.io/instance=again,{ENGINE}", standin.address)
        wait_replicas(cluster, namespace, "again", 3, timeout=60)
        standin.set(**{"vllm:num_requests_waiting": 0})
        old_uid = get(cluster, namespace, "llms", "again")["metadata"]["uid"]
        cluster.kubectl("delete", "llms", "again", "-n", namespace, "--wait=true", "--timeout=60s")
        cluster.wait_for("the old Deployment to be collected",
                         lambda: cluster.get_json("deployment", "again", namespace) is None, timeout=60)
        create(cluster, namespace, autoscaled("again"))
        recreated = get(cluster, namespace, "llms", "again")
        assert recreated["metadata"]["uid"] != old_uid
        assert get(cluster, namespace, "deployment", "again")["spec"]["replicas"] == 1
        time.sleep(3 * INTERVAL)  # a few autoscaling ticks: no demand, nothing carried over
        assert get(cluster, namespace, "deployment", "again")["spec"]["replicas"] == 1
        assert status(cluster, namespace, "again").get("desiredReplicas", 1) == 1
    scrape_targets.unmap(namespace)
