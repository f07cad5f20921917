"""Faults of the control plane and of the operator's permissions, with the real operator running.

Each test states the fault, the expected outcome, and checks that nothing a user owns is lost: the model
cache PersistentVolumeClaims and the generated router-key Secrets keep their uid and data, and no object is
duplicated. The times printed (`fault: ...`) are what README.md's fault table quotes.

The control-plane processes are killed with SIGKILL and started again exactly as kwokctl started them
(tests/support/control_plane.py). These tests run one at a time, like the whole suite.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from support import control_plane
from support.cluster import OPERATOR_NAMESPACE_PREFIX, Cluster, OperatorProcess, condition
from support.helm import CHART, helm
from support.metrics_standin import MetricsStandIn
from support.prometheus_server import PodTargets

BURST = 50
WITH_STORAGE = 5  # of the burst: a model cache each (the testbed has a pool of 40 volumes)
WITH_ROUTER = 5  # of the burst: a generated router key each


def llmservice(name: str, storage: bool = False, router: bool = False, max_model_len: int = 4096) -> dict:
    spec: dict = {
        "engine": "vllm",
        "model": {"name": "Qwen/Qwen2.5-0.5B-Instruct", "parameters": "0.5B"},
        # CPU-only Pods on the kwok node cpu-0: the burst does not depend on GPU capacity.
        "resources": {"gpus": 0, "nodeSelector": {"kubernetes.io/hostname": "cpu-0"}},
        "serving": {"maxModelLen": max_model_len},
        "router": {"enabled": router},
    }
    if storage:
        spec["storage"] = {"size": "1Gi"}
    return {"apiVersion": "serving.llm-operator.io/v1alpha1", "kind": "LLMService",
            "metadata": {"name": name}, "spec": spec}


def apply_all(cluster: Cluster, namespace: str, docs: list[dict]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs), timeout=300)


def items(cluster: Cluster, namespace: str, kind: str, selector: str = "app.kubernetes.io/managed-by=llm-operator"):
    out = cluster.kubectl("get", kind, "-n", namespace, "-l", selector, "-o", "json").stdout
    return json.loads(out)["items"]


def ready_names(cluster: Cluster, namespace: str) -> set[str]:
    objs = json.loads(cluster.kubectl("get", "llms", "-n", namespace, "-o", "json").stdout)["items"]
    return {o["metadata"]["name"] for o in objs
            if condition(o, "Ready").get("status") == "True"
            and o["status"].get("observedGeneration") == o["metadata"]["generation"]}


def owned_data(cluster: Cluster, namespace: str) -> dict[str, object]:
    """What must survive every fault: each claim's uid, each generated key's uid and value."""
    claims = {c["metadata"]["name"]: c["metadata"]["uid"] for c in items(cluster, namespace, "pvc")}
    secrets = {s["metadata"]["name"]: (s["metadata"]["uid"], s["data"]) for s in items(cluster, namespace, "secret")}
    return {"claims": claims, "secrets": secrets}


def nothing_lost(operator: OperatorProcess, cluster: Cluster, fleet: tuple[str, list[str], dict]) -> None:
    """After a control-plane fault: the operator still runs, what the fleet owns is intact, nothing doubled."""
    namespace, names, owned = fleet
    assert operator.alive()
    assert owned_data(cluster, namespace) == owned
    no_duplicates(cluster, namespace, names)


def no_duplicates(cluster: Cluster, namespace: str, names: list[str]) -> None:
    for kind in ("deployment", "service"):
        found = [o["metadata"]["name"] for o in items(cluster, namespace, kind)]
        assert len(found) == len(set(found))
        engines = [n for n in found if n in names]
        assert sorted(engines) == sorted(names), f"{kind}s: {sorted(set(names) - set(engines))} missing"


def engine_max_model_len(deployment: dict) -> str:
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args[args.index("--max-model-len") + 1]


def applied(cluster: Cluster, namespace: str, names: list[str], max_model_len: int) -> bool:
    """The operator's part: every Deployment carries the change."""
    deployments = {d["metadata"]["name"]: d for d in items(cluster, namespace, "deployment")}
    return all(n in deployments and engine_max_model_len(deployments[n]) == str(max_model_len) for n in names)


def converged(cluster: Cluster, namespace: str, names: list[str], max_model_len: int) -> bool:
    return applied(cluster, namespace, names, max_model_len) and ready_names(cluster, namespace) >= set(names)


def burst(cluster: Cluster, namespace: str, max_model_len: int = 4096) -> list[dict]:
    return [llmservice(f"b{i:02d}", storage=i < WITH_STORAGE, router=WITH_STORAGE <= i < WITH_STORAGE + WITH_ROUTER,
                       max_model_len=max_model_len) for i in range(BURST)]


@pytest.fixture(scope="module")
def fleet(operator: OperatorProcess, cluster: Cluster) -> Iterator[tuple[str, list[str], dict]]:
    """One namespace with the burst's 50 LLMServices Ready, and what they own; the control-plane faults
    below each change all 50 and check that nothing owned changed."""
    with cluster.fresh_namespace(OPERATOR_NAMESPACE_PREFIX) as namespace:
        docs = burst(cluster, namespace)
        apply_all(cluster, namespace, docs)
        names = [d["metadata"]["name"] for d in docs]
        cluster.wait_for("the burst Ready", lambda: converged(cluster, namespace, names, 4096), timeout=300,
                         interval=2)
        yield namespace, names, owned_data(cluster, namespace)


def test_apiserver_restarted_in_the_middle_of_a_burst_of_50_changes(
    operator: OperatorProcess, cluster: Cluster, fleet: tuple[str, list[str], dict]
) -> None:
    """Expected: every change is applied once the apiserver is back; nothing lost or duplicated."""
    namespace, names, _ = fleet
    changed = burst(cluster, namespace, max_model_len=8192)
    apply_all(cluster, namespace, changed[:BURST // 2])
    started = time.monotonic()
    back = control_plane.restart(cluster, "kube-apiserver")
    apply_all(cluster, namespace, changed[BURST // 2:])
    cluster.wait_for("all 50 changes applied", lambda: converged(cluster, namespace, names, 8192),
                     timeout=300, interval=2)
    recovered = time.monotonic() - started
    print(f"fault: apiserver restart mid-burst: apiserver back in {back:.1f} s, all {BURST} changes applied "
          f"{recovered:.1f} s after the kill")
    nothing_lost(operator, cluster, fleet)


def test_etcd_restarted(operator: OperatorProcess, cluster: Cluster, fleet: tuple[str, list[str], dict]) -> None:
    """Expected: the operator rides out etcd's restart, then applies a change made after it; nothing lost."""
    namespace, names, _ = fleet
    started = time.monotonic()
    back = control_plane.restart(cluster, "etcd")
    apply_all(cluster, namespace, burst(cluster, namespace, max_model_len=16384))
    cluster.wait_for("the change after etcd's restart applied", lambda: converged(cluster, namespace, names, 16384),
                     timeout=300, interval=2)
    print(f"fault: etcd restart: apiserver ready {back:.1f} s after etcd started, changes applied "
          f"{time.monotonic() - started:.1f} s after the kill")
    nothing_lost(operator, cluster, fleet)


def test_watch_dropped_for_30_seconds(operator: OperatorProcess, cluster: Cluster,
                                      fleet: tuple[str, list[str], dict]) -> None:
    """The apiserver is gone for 30 s (every watch breaks, every request fails). Expected: the operator keeps
    running, its watches resume, and a change made right after is applied; nothing lost."""
    namespace, names, _ = fleet
    back = control_plane.restart(cluster, "kube-apiserver", down_seconds=30)
    changed_at = time.monotonic()
    apply_all(cluster, namespace, burst(cluster, namespace, max_model_len=4096))
    cluster.wait_for("the change after the outage applied", lambda: applied(cluster, namespace, names, 4096),
                     timeout=300, interval=1)
    applied_after = time.monotonic() - changed_at
    # Ready also needs new Pods, which kwok's fake kubelets mark Running: their controller's watches come back
    # later than the operator's (up to about 50 s after this outage), which is the testbed's lag, not ours.
    cluster.wait_for("the change after the outage Ready", lambda: converged(cluster, namespace, names, 4096),
                     timeout=300, interval=1)
    print(f"fault: apiserver down 30 s: back {back:.1f} s after start, change applied by the operator "
          f"{applied_after:.1f} s after it was made, all Ready after {time.monotonic() - changed_at:.1f} s")
    nothing_lost(operator, cluster, fleet)


# --- the operator's own identity: a ServiceAccount with the chart's rules ----------------------------------


def chart_cluster_role(cluster: Cluster) -> dict:
    rendered = helm(cluster, "template", "llm-operator", str(CHART), "--namespace", "llm-operator").stdout
    return next(d for d in yaml.safe_load_all(rendered) if d and d.get("kind") == "ClusterRole"
                and any("llmservices" in r.get("resources", []) for r in d.get("rules", [])))


@pytest.fixture
def operator_account(cluster: Cluster, crd_installed: Cluster, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A ServiceAccount bound to the chart's ClusterRole, and a kubeconfig that authenticates as it."""
    with cluster.fresh_namespace("sa") as home:
        role = chart_cluster_role(cluster)
        role["metadata"] = {"name": f"llmop-faults-{home}"}
        # These operators serve a pattern of namespaces (rbac-*, apf-*): kopf follows Namespaces, as the chart
        # grants with watchNamespaces.
        role["rules"].append({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]})
        binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                   "metadata": {"name": f"llmop-faults-{home}"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                               "name": role["metadata"]["name"]},
                   "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": home}]}
        cluster.kubectl("create", "serviceaccount", "operator", "-n", home)
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([role, binding]))
        token = cluster.kubectl("create", "token", "operator", "-n", home, "--duration=2h").stdout.strip()
        admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
        kubeconfig = {
            "apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"],
            "users": [{"name": "operator", "user": {"token": token}}],
            "contexts": [{"name": "operator",
                          "context": {"cluster": admin["clusters"][0]["name"], "user": "operator"}}],
            "current-context": "operator",
        }
        path = tmp_path / "operator.kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig))
        try:
            yield role["metadata"]["name"], path
        finally:
            cluster.kubectl("delete", "clusterrole,clusterrolebinding", role["metadata"]["name"], check=False)


def test_rbac_narrowed_by_hand_is_reported_and_nothing_crash_loops(
    cluster: Cluster, operator_account: tuple[str, Path], tmp_path: Path
) -> None:
    """The operator may no longer patch Deployments. Expected: Stalled=True with reason Forbidden quoting the
    apiserver, one Warning Event, the process keeps running; once the rule is back, it converges."""
    role_name, kubeconfig = operator_account
    role = json.loads(cluster.kubectl("get", "clusterrole", role_name, "-o", "json").stdout)
    narrowed = json.loads(json.dumps(role))
    for rule in narrowed["rules"]:
        if "deployments" in rule.get("resources", []):
            rule["verbs"] = [v for v in rule["verbs"] if v not in ("patch", "create")]
    cluster.kubectl("replace", "-f", "-", input=json.dumps(narrowed))
    identity = Cluster(kubeconfig=str(kubeconfig), kubectl_path=cluster.kubectl_path, env=cluster.env)
    operator = OperatorProcess(identity, tmp_path / "operator.log", namespaces="rbac-*")
    operator.start()
    try:
        with cluster.fresh_namespace("rbac") as namespace:
            apply_all(cluster, namespace, [llmservice("narrow")])

            def forbidden() -> dict | None:
                obj = cluster.get_json("llms", "narrow", namespace) or {}
                return obj if condition(obj, "Stalled").get("reason") == "Forbidden" else None

            obj = cluster.wait_for("Stalled=True, reason Forbidden", forbidden, timeout=90)
            message = condition(obj, "Ready")["message"]
            assert "may not apply Deployment narrow" in message and "cannot patch" in message, message
            assert condition(obj, "Stalled")["status"] == "True"
            time.sleep(12)  # two resyncs: still alive, and the Event was posted once
            assert operator.alive()
            events = json.loads(cluster.kubectl(
                "get", "events", "-n", namespace, "-o", "json",
                "--field-selector", "involvedObject.name=narrow,reason=Forbidden").stdout)["items"]
            assert len(events) == 1 and events[0]["type"] == "Warning"
            assert operator.log().count("Traceback") == 0
            cluster.kubectl("replace", "-f", "-", input=json.dumps({**role, "metadata": {"name": role_name}}))
            restored = time.monotonic()
            cluster.wait_for("Ready once the rule is back", lambda: "narrow" in ready_names(cluster, namespace),
                             timeout=120, interval=1)
            print(f"fault: RBAC narrowed: reported as Forbidden; Ready {time.monotonic() - restored:.1f} s after "
                  "the rule was restored")
    finally:
        operator.stop()


def test_apiserver_answering_429_to_the_operator(
    cluster: Cluster, operator_account: tuple[str, Path], tmp_path: Path
) -> None:
    """API Priority and Fairness gives the operator's ServiceAccount a concurrency of about one and rejects
    what does not fit (HTTP 429). Expected: the operator retries and converges; the apiserver counted 429s."""
    _, kubeconfig = operator_account
    account = yaml.safe_load(kubeconfig.read_text())
    token = account["users"][0]["user"]["token"]
    subject = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))["sub"]
    sa_namespace, sa_name = subject.split(":")[2:4]
    level = {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
             "metadata": {"name": "llmop-faults-tiny"},
             "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 1, "lendablePercent": 0,
                                                     "limitResponse": {"type": "Reject"}}}}
    schema = {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
              "metadata": {"name": "llmop-faults-operator"},
              "spec": {"priorityLevelConfiguration": {"name": "llmop-faults-tiny"}, "matchingPrecedence": 100,
                       "distinguisherMethod": {"type": "ByUser"},
                       "rules": [{"subjects": [{"kind": "ServiceAccount",
                                                "serviceAccount": {"name": sa_name, "namespace": sa_namespace}}],
                                  "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                                     "namespaces": ["*"], "clusterScope": True}],
                                  "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]}]}}
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([level, schema]))
    identity = Cluster(kubeconfig=str(kubeconfig), kubectl_path=cluster.kubectl_path, env=cluster.env)
    operator = OperatorProcess(identity, tmp_path / "operator.log", namespaces="apf-*")
    try:
        with cluster.fresh_namespace("apf") as namespace:
            rejected_before = _rejected(cluster)
            operator.start()
            docs = [llmservice(f"a{i:02d}", router=True) for i in range(20)]
            started = time.monotonic()
            apply_all(cluster, namespace, docs)
            names = [d["metadata"]["name"] for d in docs]
            cluster.wait_for("all Ready through the 429s", lambda: ready_names(cluster, namespace) >= set(names),
                             timeout=300, interval=2)
            rejected = _rejected(cluster) - rejected_before
            print(f"fault: APF 429s: {rejected:.0f} requests rejected; 20 LLMServices Ready "
                  f"{time.monotonic() - started:.1f} s after they were applied")
            assert rejected > 0, "the priority level should have rejected some of the operator's requests"
            assert operator.alive()
            no_duplicates(cluster, namespace, names)
    finally:
        operator.stop()
        cluster.kubectl("delete", "flowschema", "llmop-faults-operator", check=False)
        cluster.kubectl("delete", "prioritylevelconfiguration", "llmop-faults-tiny", check=False)


def _rejected(cluster: Cluster) -> float:
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    total = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_flowcontrol_rejected_requests_total{") and \
                'priority_level="llmop-faults-tiny"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


# --- the autoscaler's metric source ---------------------------------------------------------------------


def test_prometheus_answering_nan_garbage_or_nothing_for_one_replica(
    operator: OperatorProcess, cluster: Cluster, namespace: str, scrape_targets: PodTargets
) -> None:
    """One of two replicas reports NaN for every metric, then an unparsable page (Prometheus marks its target
    down), then no series at all. Expected each time: the autoscaler holds its count with ScalingActive=False
    naming why, never scales down on the missing replica, and the operator keeps running; with the replica
    back, it decides again."""
    healthy = {"vllm:num_requests_waiting": 0, "vllm:num_requests_running": 2, "vllm:kv_cache_usage_perc": 0.5}
    with MetricsStandIn() as good, MetricsStandIn() as bad:
        good.set(**healthy)
        bad.set(**healthy)
        manifest = llmservice("flaky")
        manifest["spec"]["autoscaling"] = {"enabled": True, "minReplicas": 1, "maxReplicas": 3,
                                           "targetTimeToFirstTokenSeconds": 0, "scaleDownDelaySeconds": 5}
        manifest["spec"]["replicas"] = 2
        apply_all(cluster, namespace, [manifest])
        cluster.wait_for("two replicas", lambda: len(_engine_pods(cluster, namespace, "flaky")) == 2, timeout=60)
        first, _ = sorted(p["metadata"]["name"] for p in _engine_pods(cluster, namespace, "flaky"))
        cluster.kubectl("label", "pod", first, "-n", namespace, "fault=yes")
        engine = "app.kubernetes.io/instance=flaky,app.kubernetes.io/component=engine"
        scrape_targets.map(namespace, f"{engine},fault=yes", bad.address)
        scrape_targets.map(namespace, f"{engine},!fault", good.address)

        def scaling() -> dict:
            return condition(cluster.get_json("llms", "flaky", namespace), "ScalingActive")

        cluster.wait_for("the autoscaler deciding on both replicas", lambda: scaling().get("status") == "True",
                         timeout=90)
        held_at = cluster.wait_for("a decision recorded", lambda: cluster.get_json(
            "llms", "flaky", namespace)["status"].get("desiredReplicas"), timeout=60)
        for fault, apply_fault in (
            ("NaN", lambda: bad.set(**{name: float("nan") for name in healthy})),
            ("garbage", lambda: setattr(bad, "raw", "<html>502 Bad Gateway</html>\n{{{ not metrics")),
            ("no series", lambda: setattr(bad, "raw", "")),
        ):
            apply_fault()
            started = time.monotonic()
            cluster.wait_for(f"holding on {fault}", lambda: scaling().get("status") == "False", timeout=90)
            print(f"fault: Prometheus {fault} for one replica: holding after {time.monotonic() - started:.1f} s: "
                  f"{scaling().get('message')}")
            assert scaling()["reason"] == "MetricsUnavailable"
            assert cluster.get_json("llms", "flaky", namespace)["status"]["desiredReplicas"] == held_at
            assert operator.alive()
            bad.raw = None
            bad.set(**healthy)
            cluster.wait_for(f"deciding again after {fault}", lambda: scaling().get("status") == "True", timeout=90)
    scrape_targets.unmap(namespace)


def _engine_pods(cluster: Cluster, namespace: str, name: str) -> list[dict]:
    return [p for p in items(cluster, namespace, "pod", f"app.kubernetes.io/instance={name},"
                                                          "app.kubernetes.io/component=engine")
            if not p["metadata"].get("deletionTimestamp")]
