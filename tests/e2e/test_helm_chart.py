"""The Helm chart (charts/llm-operator) against the real control plane: it installs and
uninstalls cleanly (two replicas, their PodDisruptionBudget, the metrics Service, the Lease's
Role), and the RBAC it grants is what the operator needs, no more.

The second test runs the real operator locally under the chart's ServiceAccount token, with
the args and environment of the chart's Deployment, watching one namespace of its own: it takes
the leader Lease the chart's Role grants (the chart's own Pods sit on the kwok node cpu-0 and run
nothing, so nobody else holds it). It does not use the session `operator` fixture; if that
operator (which watches all namespaces) runs at the same time it also reconciles the test's
LLMServices with identical results, so the assertions are about this process: it leads, stays up,
reports its work in its metrics and its log shows no permission error.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from support.cluster import REPO_ROOT, Cluster, condition
from support.helm import CHART, helm, lease_holder, metric

GROUP = "serving.llm-operator.io"

# What the operator does in a namespace it serves: (API group, resource) -> verbs, exactly.
NAMESPACED_RULES = {
    (GROUP, "llmservices"): {"get", "list", "watch", "patch"},
    (GROUP, "llmservices/status"): {"patch"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch"},
    ("leaderworkerset.x-k8s.io", "leaderworkersets"): {"get", "list", "watch", "create", "patch"},
    ("leaderworkerset.x-k8s.io", "leaderworkersets/scale"): {"get", "patch"},
    ("", "persistentvolumeclaims"): {"get", "list", "watch", "create", "patch"},
    ("", "services"): {"list", "watch", "create", "patch"},
    ("", "configmaps"): {"list", "watch", "create", "patch"},
    ("autoscaling", "horizontalpodautoscalers"): {"list", "watch", "create", "patch"},
    ("", "pods"): {"list", "watch"},
    ("", "secrets"): {"get", "create"},
    ("", "events"): {"create"},
}
# kopf's cluster-level observation; namespaces only when it watches a list of namespaces.
CRD_RULE = {("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}}
NAMESPACE_RULE = {("", "namespaces"): {"list", "watch"}}
# Leader election, in the release namespace only: get and update of the release's Lease (by name), and
# create (which resourceNames cannot restrict). Keys with a third element are restricted to that name.
LEASES = ("coordination.k8s.io", "leases")


def lease_rules(lease: str) -> dict[tuple[str, ...], set[str]]:
    return {(*LEASES, lease): {"get", "update"}, LEASES: {"create"}}


# What every authenticated user may do (system:basic-user), and so appears in any rules review.
BUILTIN = {
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
    ("authentication.k8s.io", "selfsubjectreviews"),
}
# Every 403 names its reason, Forbidden ("... is forbidden: User ... cannot ..."); kopf says the rest.
PERMISSION_ERRORS = ("Forbidden", "forbidden", "Not enough permissions", "Unauthorized")


def get(cluster: Cluster, kind: str, name: str, namespace: str | None = None) -> dict | None:
    return cluster.get_json(kind, name, namespace)


@pytest.fixture
def release(crd_installed: Cluster, namespace: str) -> Iterator[str]:
    """A release name unique to the test (its ClusterRole is cluster-scoped); uninstalled at the end."""
    name = f"{namespace}-chart"
    yield name
    helm(crd_installed, "uninstall", name, "-n", namespace, "--wait", "--timeout", "60s", check=False)


@pytest.fixture
def watched_namespace(cluster: Cluster) -> Iterator[str]:
    with cluster.fresh_namespace() as name:
        yield name


def test_chart_installs_the_operator_on_a_cpu_node_and_uninstalls_cleanly(
    crd_installed: Cluster, namespace: str, release: str
):
    cluster = crd_installed
    helm(cluster, "install", release, str(CHART), "-n", namespace, "--wait", "--timeout", "120s")
    fullname = f"{release}-llm-operator"

    deployment = get(cluster, "deployment", fullname, namespace)
    assert deployment is not None
    assert condition(deployment, "Available").get("status") == "True"
    # Two replicas by default: the Lease keeps one writer, so the Deployment rolls.
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod_spec = deployment["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == fullname
    [container] = pod_spec["containers"]
    assert container["image"] == "ghcr.io/llm-operator/llm-operator:0.1.0"
    assert container["args"][:2] == ["run", "--all-namespaces"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    assert {"--leader-elect", f"--leader-elect-name={fullname}", f"--leader-elect-namespace={namespace}",
            "--metrics-port=8081"} <= set(container["args"])
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz", "scheme": "HTTP"}
    assert "WATCH_NAMESPACE" not in {env["name"] for env in container.get("env", [])}
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod_spec["securityContext"]["runAsNonRoot"] is True

    pods = json.loads(cluster.kubectl(
        "get", "pods", "-n", namespace, "-o", "json", "-l", f"app.kubernetes.io/instance={release}",
    ).stdout)["items"]
    assert len(pods) == 2
    for pod in pods:
        # GPU nodes are tainted and the operator needs none; the podAntiAffinity is only preferred,
        # so both replicas share the one CPU node.
        assert pod["spec"]["nodeName"] == "cpu-0"
        assert condition(pod, "Ready").get("status") == "True"

    pdb = get(cluster, "poddisruptionbudget", fullname, namespace)
    assert pdb is not None and pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    cluster.wait_for("the PDB to count both replicas", lambda: (get(cluster, "pdb", fullname, namespace) or {}).get(
        "status", {}).get("currentHealthy") == 2, timeout=30)
    assert get(cluster, "pdb", fullname, namespace)["status"]["disruptionsAllowed"] == 1
    metrics_service = get(cluster, "service", f"{fullname}-metrics", namespace)
    assert metrics_service is not None
    assert [(port["name"], port["port"], port["targetPort"]) for port in metrics_service["spec"]["ports"]] == [
        ("metrics", 8081, "metrics")]

    assert get(cluster, "serviceaccount", fullname, namespace) is not None
    role = get(cluster, "clusterrole", fullname)
    assert role is not None
    granted = {(group, resource): set(rule["verbs"])
               for rule in role["rules"] for group in rule["apiGroups"] for resource in rule["resources"]}
    assert granted == {**NAMESPACED_RULES, **CRD_RULE}  # clusterwide kopf never reads Namespaces
    binding = get(cluster, "clusterrolebinding", fullname)
    assert binding is not None
    assert binding["roleRef"]["name"] == fullname
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": fullname, "namespace": namespace}]
    # The only Role in the release namespace is leader election's, for this release's Lease.
    roles = json.loads(cluster.kubectl("get", "roles", "-n", namespace, "-o", "json").stdout)["items"]
    assert [role["metadata"]["name"] for role in roles] == [f"{fullname}-leader-election"]
    assert roles[0]["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [fullname],
         "verbs": ["get", "update"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]
    lease_binding = get(cluster, "rolebinding", f"{fullname}-leader-election", namespace)
    assert lease_binding is not None
    assert lease_binding["subjects"] == [{"kind": "ServiceAccount", "name": fullname, "namespace": namespace}]

    helm(cluster, "uninstall", release, "-n", namespace, "--wait", "--timeout", "60s")
    for kind, name, ns in (
        ("deployment", fullname, namespace), ("serviceaccount", fullname, namespace),
        ("clusterrole", fullname, None), ("clusterrolebinding", fullname, None),
        ("poddisruptionbudget", fullname, namespace), ("service", f"{fullname}-metrics", namespace),
        ("role", f"{fullname}-leader-election", namespace), ("rolebinding", f"{fullname}-leader-election", namespace),
    ):
        assert get(cluster, kind, name, ns) is None, f"{kind} {name} survived helm uninstall"
    # Helm never deletes CRDs from crds/, so uninstalling cannot delete users' LLMServices.
    assert get(cluster, "crd", f"llmservices.{GROUP}") is not None


def service_account_kubeconfig(cluster: Cluster, namespace: str, account: str, path: Path) -> Path:
    """The admin kubeconfig's cluster (server and CA), with the ServiceAccount's token as the user."""
    admin = json.loads(cluster.kubectl("config", "view", "--minify", "--raw", "--flatten", "-o", "json").stdout)
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=20m").stdout.strip()
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "test", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "test", "user": account}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def can_i(as_account: Cluster, verb: str, resource: str, namespace: str | None = None) -> bool:
    scope = ["-n", namespace] if namespace else []
    result = as_account.kubectl("auth", "can-i", verb, resource, *scope, check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


def rules_in(as_account: Cluster, namespace: str) -> dict[tuple[str, ...], set[str]]:
    """What the API server's authorizer lets this account do in `namespace` (cluster rules included),
    by (API group, resource), or (API group, resource, name) for a rule restricted to names."""
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
              "spec": {"namespace": namespace}}
    created = as_account.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(review))
    status = json.loads(created.stdout)["status"]
    assert not status.get("incomplete"), status
    granted: dict[tuple[str, ...], set[str]] = {}
    for rule in status["resourceRules"]:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for name in rule.get("resourceNames") or [None]:
                    key = (group, resource) if name is None else (group, resource, name)
                    granted.setdefault(key, set()).update(rule["verbs"])
    return granted


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def llmservice(name: str, **spec: object) -> dict:
    body = {
        "engine": "vllm",
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct", "parameters": "8B"},
        "resources": {"gpus": 1, "gpuProduct": "NVIDIA-H100-80GB-HBM3"},
        "serving": {"maxModelLen": 8192},
        **spec,
    }
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "LLMService", "metadata": {"name": name}, "spec": body}


def test_operator_runs_with_exactly_the_charts_rbac(
    crd_installed: Cluster, namespace: str, watched_namespace: str, release: str, tmp_path: Path
):
    cluster = crd_installed
    helm(cluster, "install", release, str(CHART), "-n", namespace, "--wait", "--timeout", "120s",
         "--set", f"watchNamespaces={{{watched_namespace}}}")
    fullname = f"{release}-llm-operator"
    as_account = Cluster(
        kubeconfig=str(service_account_kubeconfig(cluster, namespace, fullname, tmp_path / "sa.kubeconfig")),
        kubectl_path=cluster.kubectl_path, env={k: v for k, v in cluster.env.items() if k != "KUBECONFIG"},
    )

    # 1. The grants, as the API server's authorizer sees them for the ServiceAccount's token.
    granted = rules_in(as_account, watched_namespace)
    ours = {key: verbs for key, verbs in granted.items() if key not in BUILTIN}
    assert ours == {**NAMESPACED_RULES, **CRD_RULE, **NAMESPACE_RULE}
    outside = {key: verbs for key, verbs in rules_in(as_account, namespace).items() if key not in BUILTIN}
    assert outside == {**CRD_RULE, **NAMESPACE_RULE, **lease_rules(fullname)}, (
        "the Role must be bound in the watched namespace only, the Lease's Role in the release namespace only")
    assert can_i(as_account, "create", "deployments.apps", watched_namespace)
    assert not can_i(as_account, "create", "deployments.apps", namespace)
    assert not can_i(as_account, "create", "deployments.apps", "default")
    # Secrets: existence and the generated router key, never their values in bulk.
    assert can_i(as_account, "get", "secrets", watched_namespace)
    for verb in ("list", "watch", "update", "patch", "delete"):
        assert not can_i(as_account, verb, "secrets", watched_namespace), f"{verb} secrets"
    assert not can_i(as_account, "delete", "deployments.apps", watched_namespace)
    assert not can_i(as_account, "update", f"llmservices.{GROUP}", watched_namespace)
    assert not can_i(as_account, "create", "customresourcedefinitions.apiextensions.k8s.io")
    # The Lease: its own only, and never deleted or listed.
    assert can_i(as_account, "update", f"leases.coordination.k8s.io/{fullname}", namespace)
    assert can_i(as_account, "create", "leases.coordination.k8s.io", namespace)
    assert not can_i(as_account, "update", "leases.coordination.k8s.io/someone-else", namespace)
    for verb in ("delete", "patch"):
        assert not can_i(as_account, verb, f"leases.coordination.k8s.io/{fullname}", namespace), f"{verb} lease"
    assert not can_i(as_account, "list", "leases.coordination.k8s.io", namespace)
    assert not can_i(as_account, "create", "leases.coordination.k8s.io", watched_namespace)

    # 2. The real operator with that token, and the chart's own command line and environment.
    deployment = get(cluster, "deployment", fullname, namespace)
    assert deployment is not None
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    assert env["WATCH_NAMESPACE"] == watched_namespace
    assert "--all-namespaces" not in container["args"]
    assert {"--leader-elect", f"--leader-elect-name={fullname}",
            f"--leader-elect-namespace={namespace}"} <= set(container["args"])
    port, metrics_port = free_port(), free_port()
    args = [arg.replace("0.0.0.0:8080", f"127.0.0.1:{port}").replace("--metrics-port=8081",
                                                                     f"--metrics-port={metrics_port}")
            for arg in container["args"]]
    assert f"--metrics-port={metrics_port}" in args
    env["POD_ID"] = identity = "chart-rbac-operator"  # the Pod's name in the chart (the downward API)
    executable = Path(os.environ.get("VIRTUAL_ENV", REPO_ROOT / ".venv")) / "bin" / "llm-operator"
    log_path = tmp_path / "operator.log"
    with log_path.open("ab") as log:
        # $KUBECONFIG too: `import kopf` loads kubernetes.config, which fixes its default kubeconfig
        # path from $KUBECONFIG at import, before `run` applies --kubeconfig.
        process = subprocess.Popen(
            [str(executable), *args, "--kubeconfig", as_account.kubeconfig, "--resync-interval", "5"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**as_account.env, **env, "KUBECONFIG": as_account.kubeconfig},
        )
    try:
        def healthy() -> bool:
            assert process.poll() is None, f"the operator exited:\n{log_path.read_text(errors='replace')}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        cluster.wait_for("the operator's liveness endpoint", healthy, timeout=60)

        # Storage (a PVC) and the router (ConfigMap, generated key Secret, Deployment, Service).
        served = llmservice("served", storage={"size": "10Gi"})
        # Too big for one RTX 4090: the operator posts a Warning Event and deploys nothing.
        huge = llmservice("huge", model={"name": "meta-llama/Llama-3.1-70B-Instruct", "parameters": "70B"},
                          resources={"gpus": 1, "gpuProduct": "NVIDIA-GeForce-RTX-4090"})
        for body in (served, huge):
            cluster.kubectl("apply", "-n", watched_namespace, "-f", "-", input=yaml.safe_dump(body))
        cluster.kubectl("wait", "--for=condition=Ready", "llms/served", "-n", watched_namespace, "--timeout=90s")
        for kind, name in (
            ("deployment", "served"), ("service", "served"), ("persistentvolumeclaim", "served-model-cache"),
            ("deployment", "served-router"), ("service", "served-router"), ("configmap", "served-router"),
            ("secret", "served-router-key"),
        ):
            assert get(cluster, kind, name, watched_namespace) is not None, f"{kind} {name}"
        cluster.wait_for(
            "ModelFits=False on huge",
            lambda: condition(get(cluster, "llms", "huge", watched_namespace), "ModelFits").get("status") == "False",
            timeout=30,
        )
        cluster.wait_for("the ModelDoesNotFit Warning Event", lambda: cluster.kubectl(
            "get", "events", "-n", watched_namespace, "-o", "name",
            "--field-selector", "involvedObject.name=huge,reason=ModelDoesNotFit",
        ).stdout.strip(), timeout=30)
        # Resyncs (every 5 s here) rebuild each plan and refresh status under this token: let two pass.
        time.sleep(12)
        assert healthy()
        # It leads (through the chart's Lease grants), and its metrics say so and count its work.
        assert lease_holder(cluster, namespace, fullname) == identity
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            scraped = response.read().decode()
        assert metric(scraped, "llm_operator_leader") == 1
        assert (metric(scraped, "llm_operator_reconciles_total") or 0) > 0, scraped
        assert (metric(scraped, "llm_operator_fit_check_refusals_total") or 0) >= 1, scraped  # huge
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
    log = log_path.read_text(errors="replace")
    print(f"operator log: {log_path}")
    assert f"reconciled {watched_namespace}/" in log, f"the operator handled nothing:\n{log}"
    problems = [line for line in log.splitlines() if any(word in line for word in PERMISSION_ERRORS)]
    assert not problems, "permission errors under the chart's RBAC:\n" + "\n".join(problems)
    assert "Traceback" not in log, f"the operator failed under the chart's RBAC:\n{log}"
