"""High availability: two real operator processes with `--leader-elect` against the real control plane.
One holds the Lease and reconciles; the other waits (answering its liveness probe and reporting
llm_operator_leader 0 on its real /metrics endpoint). The leader is killed with SIGKILL, as when its node
dies, and a spec change is made right away: the standby takes the Lease and applies it. The time it takes
is printed, and README.md quotes it."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from support.cluster import Cluster, OperatorProcess, condition
from support.hub_standin import HubStandIn
from support.prometheus_server import free_port

PREFIX = "ha"  # namespaces these operators serve; the session operator serves op-*


def metric(port: int, name: str, **labels: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


class Replica:
    def __init__(self, cluster: Cluster, log: Path, lease_namespace: str, hub: HubStandIn) -> None:
        self.metrics_port, self.liveness_port = free_port(), free_port()
        self.process = OperatorProcess(
            cluster, log, namespaces=f"{PREFIX}-*", env={"HF_ENDPOINT": hub.endpoint},
            extra_args=("--leader-elect", "--leader-elect-namespace", lease_namespace,
                        "--leader-elect-name", "llm-operator-ha", "--metrics-port", str(self.metrics_port),
                        "--liveness", f"http://127.0.0.1:{self.liveness_port}/healthz"),
        )

    @property
    def identity_suffix(self) -> str:
        assert self.process.process is not None
        return f"-{self.process.process.pid}"


@pytest.fixture
def lease_namespace(cluster: Cluster, crd_installed: Cluster) -> Iterator[str]:
    with cluster.fresh_namespace("lease") as name:
        yield name


@pytest.fixture
def replicas(cluster: Cluster, lease_namespace: str, hub: HubStandIn,
             tmp_path: Path) -> Iterator[tuple[Replica, Replica]]:
    first, second = (Replica(cluster, tmp_path / f"operator-{i}.log", lease_namespace, hub) for i in range(2))
    yield first, second
    for replica in (first, second):
        replica.process.stop()
        print(f"{replica.process.log_path}:\n{replica.process.log()[-3000:]}")


def holder(cluster: Cluster, namespace: str) -> str | None:
    lease = cluster.get_json("lease", "llm-operator-ha", namespace)
    return ((lease or {}).get("spec") or {}).get("holderIdentity")


def engine_max_model_len(cluster: Cluster, namespace: str, name: str) -> str | None:
    deployment = cluster.get_json("deployment", name, namespace) or {}
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or [{}]
    args = containers[0].get("args") or []
    return args[args.index("--max-model-len") + 1] if "--max-model-len" in args else None


def test_the_standby_takes_over_from_a_killed_leader_and_applies_the_change_made_meanwhile(
    cluster: Cluster, lease_namespace: str, replicas: tuple[Replica, Replica]
) -> None:
    first, second = replicas
    first.process.start()
    cluster.wait_for("the first replica holds the Lease",
                     lambda: (holder(cluster, lease_namespace) or "").endswith(first.identity_suffix), timeout=60)
    second.process.start()
    cluster.wait_for("the standby answers its liveness probe", lambda: healthy(second.liveness_port), timeout=60)
    cluster.wait_for("the standby serves /metrics",
                     lambda: _quiet(lambda: metric(second.metrics_port, "llm_operator_leader")) == 0, timeout=30)
    assert metric(first.metrics_port, "llm_operator_leader") == 1

    with cluster.fresh_namespace(PREFIX) as namespace:
        service = {"apiVersion": "serving.llm-operator.io/v1alpha1", "kind": "LLMService",
                   "metadata": {"name": "ha"},
                   "spec": {"engine": "vllm", "model": {"name": "meta-llama/Llama-3.1-8B-Instruct", "parameters": "8B"},
                            "resources": {"gpus": 1, "gpuProduct": "NVIDIA-H100-80GB-HBM3"},
                            "serving": {"maxModelLen": 8192}, "router": {"enabled": False}}}
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(service))
        cluster.kubectl("wait", "--for=condition=Ready", "llms/ha", "-n", namespace, "--timeout=120s")
        assert metric(first.metrics_port, "llm_operator_reconciles_total", result="applied") >= 1
        assert metric(first.metrics_port, "llm_operator_apply_requests_total", kind="Deployment") >= 1
        assert metric(second.metrics_port, "llm_operator_reconciles_total", result="applied") == 0

        first.process.kill()  # SIGKILL: no release of the Lease, as when the node dies
        killed_at = time.monotonic()
        service["spec"]["serving"]["maxModelLen"] = 16384
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(service))

        cluster.wait_for("the standby holds the Lease",
                         lambda: (holder(cluster, lease_namespace) or "").endswith(second.identity_suffix),
                         timeout=60, interval=0.2)
        took_over = time.monotonic() - killed_at
        cluster.wait_for("the change made during the failover is applied",
                         lambda: engine_max_model_len(cluster, namespace, "ha") == "16384", timeout=60, interval=0.2)
        applied = time.monotonic() - killed_at
        obj = cluster.get_json("llms", "ha", namespace)
        cluster.wait_for("status caught up",
                         lambda: (o := cluster.get_json("llms", "ha", namespace))["status"].get("observedGeneration")
                         == o["metadata"]["generation"] and condition(o, "Ready").get("status") == "True",
                         timeout=60)
        print(f"failover: the standby held the Lease {took_over:.1f} s after SIGKILL, "
              f"and applied the change made meanwhile {applied:.1f} s after it")
        assert obj is not None
        assert metric(second.metrics_port, "llm_operator_leader") == 1
        assert metric(second.metrics_port, "llm_operator_reconciles_total", result="applied") >= 1
        # One writer at a time: the operator's last write to the engine Deployment (its managedFields time, in
        # whole seconds) is no earlier than the second the standby acquired the Lease, and the standby
        # reconciled nothing before it held the Lease.
        lease = cluster.get_json("lease", "llm-operator-ha", lease_namespace)
        acquired = lease["spec"]["acquireTime"][:19]  # to the second, as managedFields stamps
        deployment = json.loads(cluster.kubectl("get", "deployment", "ha", "-n", namespace, "-o", "json",
                                                "--show-managed-fields").stdout)
        written = [m["time"][:19] for m in deployment["metadata"]["managedFields"]
                   if m["manager"] == "llm-operator" and m["operation"] == "Apply"]
        assert written and max(written) >= acquired, (written, acquired)
        log = second.process.log()
        assert "holds the Lease" in log
        before = log.split("holds the Lease", 1)[0]
        assert "reconciled" not in before, before[-2000:]
        assert lease["spec"]["leaseTransitions"] == 1
        assert took_over < 30, "the Lease lasts 15 s: the standby should hold it within about that"


def _quiet(read):
    with contextlib.suppress(OSError, json.JSONDecodeError):
        return read()
    return None
