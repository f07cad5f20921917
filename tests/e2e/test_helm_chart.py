"""The Helm chart (charts/llm-operator) against the real control plane: it installs and
uninstalls cleanly, and the RBAC it grants is what the operator needs, no more.

The second test runs the real operator locally under the chart's ServiceAccount token, with
the args and environment of the chart's Deployment, watching one namespace of its own. It
does not use the session `operator` fixture; if that operator (which watches all namespaces)
runs at the same time it also reconciles the test's LLMServices with identical results, so the
assertions are about this process: it stays up and its log shows no permission error.
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
from support.helm import CHART, helm

GROUP = "serving.llm-operator.io"

# What the operator does in a namespace it serves: (API group, resource) -> verbs, exactly.
NAMESPACED_RULES = {
    (GROUP, "llmservices"): {"get", "list", "watch", "patch"},
    (GROUP, "llmservices/status"): {"patch"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch"},
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
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod_spec = deployment["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == fullname
    [container] = pod_spec["containers"]
    assert container["image"] == "ghcr.io/llm-operator/llm-operator:0.1.0"
    assert container["args"][:2] == ["run", "--all-namespaces"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz", "scheme": "HTTP"}
    assert "WATCH_NAMESPACE" not in {env["name"] for env in container.get("env", [])}
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod_spec["securityContext"]["runAsNonRoot"] is True

    pods = json.loads(cluster.kubectl(
        "get", "pods", "-n", namespace, "-o", "json", "-l", f"app.kubernetes.io/instance={release}",
    ).stdout)["items"]
    assert len(pods) == 1
    assert pods[0]["spec"]["nodeName"] == "cpu-0"  # GPU nodes are tainted; the operator needs none
    assert condition(pods[0], "Ready").get("status") == "True"

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
    assert not json.loads(cluster.kubectl("get", "roles", "-n", namespace, "-o", "json").stdout)["items"]

    helm(cluster, "uninstall", release, "-n", namespace, "--wait", "--timeout", "60s")
    for kind, name, ns in (
        ("deployment", fullname, namespace), ("serviceaccount", fullname, namespace),
        ("clusterrole", fullname, None), ("clusterrolebinding", fullname, None),
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


def rules_in(as_account: Cluster, namespace: str) -> dict[tuple[str, str], set[str]]:
    """What the API server's authorizer lets this account do in `namespace` (cluster rules included)."""
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
              "spec": {"namespace": namespace}}
    created = as_account.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(review))
    status = json.loads(created.stdout)["status"]
    assert not status.get("incomplete"), status
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in status["resourceRules"]:
        assert not rule.get("resourceNames"), rule
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                granted.setdefault((group, resource), set()).update(rule["verbs"])
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
    assert outside == {**CRD_RULE, **NAMESPACE_RULE}, "the Role must be bound in the watched namespace only"
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

    # 2. The real operator with that token, and the chart's own command line and environment.
    deployment = get(cluster, "deployment", fullname, namespace)
    assert deployment is not None
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    assert env["WATCH_NAMESPACE"] == watched_namespace
    assert "--all-namespaces" not in container["args"]
    port = free_port()
    args = [arg.replace("0.0.0.0:8080", f"127.0.0.1:{port}") for arg in container["args"]]
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
