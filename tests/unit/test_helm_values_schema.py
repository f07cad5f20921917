"""The Helm chart, offline: its CRD cannot drift from crds/, its values.yaml satisfies its
values.schema.json, the schema refuses what the chart cannot do, and (when helm is installed)
the templates render the RBAC the operator needs and nothing more, two leader-electing replicas
with their PodDisruptionBudget, and the metrics Service, ServiceMonitor and PrometheusRule (whose
alerts promtool checks and unit-tests, when it is installed).

The schema is checked with `jsonschema` when it is installed, and always with the small
draft-07 subset validator below, which refuses schemas that use a keyword it does not know.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "llm-operator"
CRD_NAME = "llmservices.serving.llm-operator.io.yaml"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())

ANNOTATIONS = {"$schema", "title", "description", "definitions", "default", "examples"}
TYPES = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
    "integer": int, "number": (int, float),
}


def _is_type(value: Any, name: str | list[str]) -> bool:
    if isinstance(name, list):
        return any(_is_type(value, one) for one in name)
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, TYPES[name])


def _bound_holds(keyword: str, value: float, bound: float) -> bool:
    if keyword == "minimum":
        return value >= bound
    if keyword == "maximum":
        return value <= bound
    return value > bound  # exclusiveMinimum


def _string_holds(keyword: str, value: str, rule: Any) -> bool:
    if keyword == "minLength":
        return len(value) >= rule
    if keyword == "maxLength":
        return len(value) <= rule
    return re.search(rule, value) is not None  # pattern: unanchored, as JSON Schema says


def validate(value: Any, schema: dict, root: dict | None = None, path: str = "$") -> list[str]:
    """Errors of `value` against the draft-07 subset the chart's schema uses."""
    root = schema if root is None else root
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return validate(value, target, root, path)
    errors: list[str] = []
    for keyword, rule in schema.items():
        if keyword in ANNOTATIONS:
            continue
        if keyword == "type":
            if not _is_type(value, rule):
                errors.append(f"{path}: {value!r} is not of type {rule}")
                return errors
        elif keyword == "enum":
            if value not in rule:
                errors.append(f"{path}: {value!r} is not one of {rule}")
        elif keyword == "anyOf":
            if all(validate(value, sub, root, path) for sub in rule):
                errors.append(f"{path}: {value!r} matches none of anyOf")
        elif keyword == "not":
            if not validate(value, rule, root, path):
                errors.append(f"{path}: {value!r} matches a forbidden schema")
        elif keyword in ("minimum", "maximum", "exclusiveMinimum"):
            if _is_type(value, "number") and not _bound_holds(keyword, value, rule):
                errors.append(f"{path}: {value!r} violates {keyword} {rule}")
        elif keyword in ("minLength", "maxLength", "pattern"):
            if isinstance(value, str) and not _string_holds(keyword, value, rule):
                errors.append(f"{path}: {value!r} violates {keyword} {rule!r}")
        elif keyword == "required":
            if isinstance(value, dict):
                errors.extend(f"{path}: {key!r} is required" for key in rule if key not in value)
        elif keyword == "properties":
            if isinstance(value, dict):
                for key, sub in rule.items():
                    if key in value:
                        errors.extend(validate(value[key], sub, root, f"{path}.{key}"))
        elif keyword == "additionalProperties":
            if isinstance(value, dict):
                for key in set(value) - set(schema.get("properties", {})):
                    if rule is False:
                        errors.append(f"{path}: unknown key {key!r}")
                    elif isinstance(rule, dict):
                        errors.extend(validate(value[key], rule, root, f"{path}.{key}"))
        elif keyword == "items":
            if isinstance(value, list):
                for index, item in enumerate(value):
                    errors.extend(validate(item, rule, root, f"{path}[{index}]"))
        elif keyword == "uniqueItems":
            if rule and isinstance(value, list) and len({json.dumps(v, sort_keys=True) for v in value}) < len(value):
                errors.append(f"{path}: items are not unique")
        else:
            raise AssertionError(f"{path}: the hand validator does not know the keyword {keyword!r}")
    return errors


def schema_errors(values: dict) -> list[str]:
    errors = validate(values, SCHEMA)
    try:
        import jsonschema
    except ImportError:
        return errors
    validator = jsonschema.Draft7Validator(SCHEMA)
    assert bool(errors) == any(True for _ in validator.iter_errors(values)), (errors, values)
    return errors


def with_values(**changes: Any) -> dict:
    values = copy.deepcopy(VALUES)
    for dotted, value in changes.items():
        target = values
        *parents, last = dotted.split("__")
        for key in parents:
            target = target[key]
        target[last] = value
    return values


def test_chart_crd_is_the_generated_crd_byte_for_byte():
    assert (CHART / "crds" / CRD_NAME).read_bytes() == (ROOT / "crds" / CRD_NAME).read_bytes(), (
        f"charts/llm-operator/crds/ is stale: cp crds/{CRD_NAME} charts/llm-operator/crds/"
    )
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == sorted(p.name for p in (ROOT / "crds").iterdir())


def test_chart_app_version_is_the_operators_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert chart["apiVersion"] == "v2"
    assert f'version = "{chart["appVersion"]}"' in pyproject


def test_values_yaml_satisfies_the_schema():
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema_errors(VALUES) == []


def test_default_images_name_every_engine_the_operator_knows():
    """A new engine gets its defaultImages key (and so its --<engine>-image flag) in values and schema."""
    from llm_operator.engines import ENGINES

    expected = {*ENGINES, "router"}
    assert set(VALUES["defaultImages"]) == expected
    assert set(SCHEMA["properties"]["defaultImages"]["properties"]) == expected


def test_every_value_is_in_the_schema():
    """additionalProperties false on every object the chart defines, so typos fail the install."""
    def walk(values: dict, schema: dict, path: str) -> None:
        if "$ref" in schema:
            return
        properties = schema.get("properties")
        if properties is None:
            return  # a free-form Kubernetes object (resources' insides, affinity, ...)
        assert schema.get("additionalProperties") is False, f"{path} accepts unknown keys"
        for key, value in values.items():
            assert key in properties, f"{path}.{key} is not in values.schema.json"
            if isinstance(value, dict):
                walk(value, properties[key], f"{path}.{key}")

    walk(VALUES, SCHEMA, "$")


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"logLevel": "verbose"}, "not a log level of llm-operator run"),
        ({"replicaCount": 1.5}, "replicas are whole"),
        ({"replicaCount": -1}, "negative replicas"),
        ({"watchNamespaces": ["Team_A"]}, "not a namespace name"),
        ({"watchNamespaces": ["a", "a"]}, "duplicate namespace"),
        ({"extraArgs": ["--peering=x"]}, "peering is not supported"),
        ({"extraArgs": ["--all-namespaces"]}, "scope comes from watchNamespaces"),
        ({"extraArgs": ["--leader-elect"]}, "leader election comes from leaderElection"),
        ({"extraArgs": ["--leader-elect-name=x"]}, "the Lease's name comes from leaderElection.leaseName"),
        ({"extraArgs": ["--leader-elect-namespace", "x"]}, "the Lease lives in the release namespace"),
        ({"extraArgs": ["--metrics-port=9000"]}, "the port comes from metrics.port"),
        ({"extraEnv": [{"name": "POD_NAMESPACE", "value": "x"}]}, "the chart sets it from the Pod"),
        ({"leaderElection__enabled": "true"}, "not a boolean"),
        ({"leaderElection__leaseName": "My_Lease"}, "not an object name"),
        ({"leaderElection__lease": "x"}, "typo of leaseName"),
        ({"podDisruptionBudget__minAvailable": "half"}, "neither an integer nor a percentage"),
        ({"podDisruptionBudget__maxUnavailable": -1}, "negative"),
        ({"metrics__port": 80}, "a privileged port for a non-root operator"),
        ({"metrics__port": "8081"}, "port is an integer"),
        ({"metrics__serviceMonitor__interval": "30"}, "not a Prometheus duration"),
        ({"metrics__serviceMonitor__scrapeTimeout": "soon"}, "not a Prometheus duration"),
        ({"metrics__serviceMonitor__selector": {}}, "unknown key"),
        ({"metrics__prometheusRule__labels": {"release": 1}}, "label values are strings"),
        ({"extraEnv": [{"name": "WATCH_NAMESPACE", "value": "x"}]}, "scope comes from watchNamespaces"),
        ({"prometheusUrl": "prometheus:9090"}, "not a URL"),
        ({"autoscaleIntervalSeconds": 0}, "interval must be positive"),
        ({"image__pullPolicy": "Sometimes"}, "not a pull policy"),
        ({"image__tags": "1.0"}, "typo of tag"),
        ({"livenessProbe__port": "8080"}, "port is an integer"),
        ({"rbac__create": "yes"}, "not a boolean"),
        ({"nodeSelector": {"gpu": True}}, "label values are strings"),
        ({"replicas": 1}, "unknown top-level key"),
    ],
)
def test_schema_refuses(changes: dict, why: str):
    assert schema_errors(with_values(**changes)), why


@pytest.mark.parametrize(
    "changes",
    [
        {"watchNamespaces": ["team-a", "team-b"]},
        {"replicaCount": 0},
        {"replicaCount": 1, "leaderElection": {"enabled": False, "leaseName": ""}},
        {"replicaCount": 3, "leaderElection": {"enabled": True, "leaseName": "ops.llm-operator"}},
        {"podDisruptionBudget": {"enabled": True, "minAvailable": "50%", "maxUnavailable": None}},
        {"podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": 1}},
        {"metrics__serviceMonitor": {"enabled": True, "interval": "1m30s", "scrapeTimeout": "10s",
                                     "labels": {"release": "kube-prometheus-stack"}}},
        {"metrics__enabled": False, "metrics__port": 9090},
        {"image__tag": "0.2.0", "logLevel": "debug", "autoscaleIntervalSeconds": 2.5},
        {"extraArgs": ["--some-future-flag=1"], "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}]},
        {"tolerations": [{"key": "dedicated", "operator": "Exists"}], "affinity": {"nodeAffinity": {}}},
    ],
)
def test_schema_accepts(changes: dict):
    assert schema_errors(with_values(**changes)) == []


# --- helm itself ---------------------------------------------------------------------------

def _helm() -> str:
    found = shutil.which("helm")
    if found:
        return found
    tools_bin = subprocess.run(
        ["bash", "-c", f". {ROOT}/hack/lib.sh && echo $TOOLS_BIN"], capture_output=True, text=True, check=True,
    ).stdout.strip()
    candidate = Path(tools_bin) / "helm"
    if not candidate.exists():
        pytest.skip("helm is not installed (hack/build-tools.sh builds it)")
    return str(candidate)


def helm_template(*args: str) -> list[dict]:
    result = subprocess.run(
        [_helm(), "template", "rel", str(CHART), "--namespace", "ops", *args], capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def grants(role: dict) -> dict[tuple[str, str], set[str]]:
    return {(group, resource): set(rule["verbs"])
            for rule in role["rules"] for group in rule["apiGroups"] for resource in rule["resources"]}


def test_helm_lint_is_clean():
    result = subprocess.run([_helm(), "lint", "--strict", str(CHART)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_helm_enforces_the_schema():
    result = subprocess.run(
        [_helm(), "template", "rel", str(CHART), "--set", "replicaCount=-1"], capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert "replicaCount" in result.stderr


def helm_template_fails(*args: str) -> str:
    result = subprocess.run(
        [_helm(), "template", "rel", str(CHART), "--namespace", "ops", *args], capture_output=True, text=True,
    )
    assert result.returncode != 0, result.stdout
    return result.stderr


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def operator_container(docs: list[dict]) -> dict:
    [deployment] = of_kind(docs, "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_all_namespaces_by_default_with_one_cluster_role():
    docs = helm_template()
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "PodDisruptionBudget", "Role",
                     "RoleBinding", "Service", "ServiceAccount"]
    container = operator_container(docs)
    assert container["image"] == "ghcr.io/llm-operator/llm-operator:0.1.0"
    assert container["args"] == [
        "run", "--all-namespaces", "--log-level=info",
        "--prometheus-url=http://prometheus-operated.monitoring.svc:9090", "--autoscale-interval=15",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--leader-elect", "--leader-elect-name=rel-llm-operator", "--leader-elect-namespace=ops",
        "--metrics-port=8081",
    ]
    assert "WATCH_NAMESPACE" not in {env["name"] for env in container["env"]}
    [role] = [doc for doc in docs if doc["kind"] == "ClusterRole"]
    assert ("", "namespaces") not in grants(role)  # kopf reads Namespaces only when given a list
    # The only namespaced Role is leader election's, in the release namespace.
    [lease_role] = of_kind(docs, "Role")
    assert (lease_role["metadata"]["name"], lease_role["metadata"]["namespace"]) == (
        "rel-llm-operator-leader-election", "ops")


def test_two_leader_electing_replicas_by_default():
    docs = helm_template()
    [deployment] = of_kind(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    # The Lease keeps one writer, so a rollout may overlap old and new Pods.
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    container = operator_container(docs)
    assert "--leader-elect" in container["args"]
    env = {item["name"]: item for item in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # Replicas preferably on different nodes; preferred, so one node still schedules both.
    affinity = spec["template"]["spec"]["affinity"]
    assert set(affinity) == {"podAntiAffinity"}
    [term] = affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in affinity["podAntiAffinity"]

    [pdb] = of_kind(docs, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["metadata"]["namespace"] == "ops"
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": spec["selector"]["matchLabels"]}}


def test_the_lease_role_grants_only_this_releases_lease():
    docs = helm_template("--set", "leaderElection.leaseName=ops-lease")
    [role] = of_kind(docs, "Role")
    assert role["metadata"]["namespace"] == "ops"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["ops-lease"],
         "verbs": ["get", "update"]},
        # The authorizer sees no name on a create: resourceNames cannot restrict it.
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]
    [binding] = of_kind(docs, "RoleBinding")
    assert binding["metadata"]["namespace"] == "ops"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-llm-operator", "namespace": "ops"}]
    assert "--leader-elect-name=ops-lease" in operator_container(docs)["args"]


def test_one_replica_without_leader_election_is_standalone_and_recreated():
    docs = helm_template("--set", "replicaCount=1", "--set", "leaderElection.enabled=false")
    assert not of_kind(docs, "Role") and not of_kind(docs, "RoleBinding")
    assert not of_kind(docs, "PodDisruptionBudget")  # it would block every drain of the node
    [deployment] = of_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not [arg for arg in operator_container(docs)["args"] if arg.startswith("--leader-elect")]


def test_several_replicas_without_leader_election_are_refused():
    stderr = helm_template_fails("--set", "leaderElection.enabled=false")
    assert "replicaCount 2 needs leaderElection.enabled=true" in stderr
    stderr = helm_template_fails("--set", "replicaCount=3", "--set", "leaderElection.enabled=false")
    assert "replicaCount 3 needs leaderElection.enabled=true" in stderr


@pytest.mark.parametrize(
    "arg", ["--leader-elect", "--leader-elect-name=x", "--metrics-port=9000", "--peering=x", "--liveness=x"],
)
def test_extra_args_setting_the_charts_flags_are_refused(arg: str):
    assert "extraArgs" in helm_template_fails("--set-json", f'extraArgs=["{arg}"]')


@pytest.mark.parametrize(
    ("arg", "flag"),
    [("--metrics=9000", "--metrics-port"), ("--leader-elect-names=x", "--leader-elect-namespace"),
     ("--leader", "--leader-elect"), ("--peer=x", "--peering"), ("--all-name", "--all-namespaces")],
)
def test_extra_args_abbreviating_the_charts_flags_are_refused(arg: str, flag: str):
    """argparse expands unambiguous abbreviations, which the schema's exact patterns do not see."""
    assert schema_errors(with_values(extraArgs=[arg])) == []
    stderr = helm_template_fails("--set-json", f'extraArgs=["{arg}"]')
    assert f"sets {flag}" in stderr


def test_extra_args_of_other_flags_pass_through():
    args = operator_container(helm_template("--set-json", 'extraArgs=["--resync-interval=5","--log-level=debug"]'))[
        "args"]
    assert args[-2:] == ["--resync-interval=5", "--log-level=debug"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [((), None),
     (("--set", "podDisruptionBudget.minAvailable=50%"), {"minAvailable": "50%"}),
     (("--set", "podDisruptionBudget.maxUnavailable=1"), {"maxUnavailable": 1}),
     (("--set", "replicaCount=3", "--set", "podDisruptionBudget.maxUnavailable=34%"), {"maxUnavailable": "34%"})],
)
def test_pod_disruption_budget_takes_min_available_or_max_unavailable(args: tuple[str, ...], expected: dict | None):
    [pdb] = of_kind(helm_template(*args), "PodDisruptionBudget")
    budget = {key: value for key, value in pdb["spec"].items() if key != "selector"}
    assert budget == (expected or {"minAvailable": 1})


@pytest.mark.parametrize(
    "args", [("--set", "replicaCount=1"), ("--set", "replicaCount=0"), ("--set", "podDisruptionBudget.enabled=false")],
)
def test_no_pod_disruption_budget_for_one_replica_or_when_disabled(args: tuple[str, ...]):
    assert not of_kind(helm_template(*args), "PodDisruptionBudget")


def test_affinity_replaces_the_default_anti_affinity():
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]}]}}}
    [deployment] = of_kind(helm_template("--set-json", f"affinity={json.dumps(affinity)}"), "Deployment")
    assert deployment["spec"]["template"]["spec"]["affinity"] == affinity


def test_metrics_service_and_port_by_default():
    docs = helm_template()
    container = operator_container(docs)
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    [service] = of_kind(docs, "Service")
    assert service["metadata"]["name"] == "rel-llm-operator-metrics"
    assert service["metadata"]["namespace"] == "ops"
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"}]
    [deployment] = of_kind(docs, "Deployment")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert not of_kind(docs, "ServiceMonitor") and not of_kind(docs, "PrometheusRule")


def test_metrics_off_renders_no_service_port_or_flag():
    docs = helm_template("--set", "metrics.enabled=false")
    assert not of_kind(docs, "Service")
    container = operator_container(docs)
    assert "metrics" not in {port["name"] for port in container["ports"]}
    assert not [arg for arg in container["args"] if arg.startswith("--metrics-port")]


def test_metrics_port_must_differ_from_the_liveness_port():
    assert "both 8080" in helm_template_fails("--set", "metrics.port=8080")


def test_monitoring_objects_need_metrics():
    for kind in ("serviceMonitor", "prometheusRule"):
        stderr = helm_template_fails("--set", "metrics.enabled=false", "--set", f"metrics.{kind}.enabled=true")
        assert "need metrics.enabled=true" in stderr


def test_service_monitor_when_enabled():
    docs = helm_template("--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.interval=15s",
                         "--set", "metrics.serviceMonitor.labels.release=kube-prometheus-stack")
    [monitor] = of_kind(docs, "ServiceMonitor")
    [service] = of_kind(docs, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == "ops"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "scheme": "http", "interval": "15s"}]
    assert not of_kind(docs, "PrometheusRule")


def prometheus_rule(*args: str) -> dict:
    [rule] = of_kind(helm_template("--set", "metrics.prometheusRule.enabled=true", *args), "PrometheusRule")
    return rule


def test_prometheus_rule_when_enabled():
    rule = prometheus_rule("--set", "metrics.prometheusRule.labels.release=kube-prometheus-stack")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == "ops"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    [group] = rule["spec"]["groups"]
    alerts = {item["alert"]: item for item in group["rules"]}
    assert set(alerts) == {"LLMOperatorDown", "LLMOperatorReconcileErrors", "LLMOperatorAutoscalerHolding"}
    selector = 'job="rel-llm-operator-metrics",namespace="ops"'
    for alert in alerts.values():
        assert selector in alert["expr"], alert  # this release's series only
    assert alerts["LLMOperatorDown"]["for"] == "5m"
    assert alerts["LLMOperatorReconcileErrors"]["for"] == alerts["LLMOperatorAutoscalerHolding"]["for"] == "15m"
    # With the operator stopped on purpose, "down" is no alert.
    [group] = prometheus_rule("--set", "replicaCount=0")["spec"]["groups"]
    assert "LLMOperatorDown" not in {item["alert"] for item in group["rules"]}


# --- the alerts, evaluated by promtool ------------------------------------------------------

def _promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.skip("promtool is not installed (Debian's prometheus package has it)")
    return found


def test_prometheus_rule_passes_promtool_check(tmp_path: Path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": prometheus_rule()["spec"]["groups"]}))
    result = subprocess.run([_promtool(), "check", "rules", str(rules)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


SEL = 'job="rel-llm-operator-metrics",namespace="ops"'


def _series(name: str, labels: str, values: str) -> dict:
    return {"series": f"{name}{{{SEL}{',' if labels else ''}{labels}}}", "values": values}


def _healthy(minutes: int = 60) -> list[dict]:
    """Two replicas scraped every minute: a leads, b stands by; no errors, steady decisions."""
    return [
        _series("up", 'pod="a"', f"1x{minutes}"),
        _series("up", 'pod="b"', f"1x{minutes}"),
        _series("llm_operator_leader", 'pod="a"', f"1x{minutes}"),
        _series("llm_operator_leader", 'pod="b"', f"0x{minutes}"),
        _series("llm_operator_reconciles_total", 'pod="a",result="error"', f"0x{minutes}"),
        _series("llm_operator_reconciles_total", 'pod="a",result="applied"', f"0+2x{minutes}"),
        _series("llm_operator_autoscaler_decisions_total", 'pod="a",decision="hold"', f"0x{minutes}"),
        _series("llm_operator_autoscaler_decisions_total", 'pod="a",decision="steady"', f"0+4x{minutes}"),
        _series("llm_operator_metric_source_errors_total", 'pod="a",source="prometheus"', f"0x{minutes}"),
    ]


def _replace(series: list[dict], *changes: dict) -> list[dict]:
    changed = {item["series"]: item for item in changes}
    return [changed.pop(item["series"], item) for item in series] + list(changed.values())


BURSTS = "0 " + " ".join(str(4 * (minute // 8 + 1)) for minute in range(59))
DOWN = {"exp_labels": {"severity": "critical", "namespace": "ops"}}
WARNING = {"exp_labels": {"severity": "warning"}}


def _case(series: list[dict], alert: str, *checks: tuple[str, bool]) -> dict:
    """checks: (eval time, fires?)."""
    expected = DOWN if alert == "LLMOperatorDown" else WARNING
    return {"interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": at, "alertname": alert, "exp_alerts": [expected] if fires else []} for at, fires in checks
    ]}


ALERT_CASES = {
    "healthy: no alert": [
        _case(_healthy(), alert, ("10m", False), ("50m", False))
        for alert in ("LLMOperatorDown", "LLMOperatorReconcileErrors", "LLMOperatorAutoscalerHolding")
    ],
    "never scraped": [_case([], "LLMOperatorDown", ("4m", False), ("6m", True))],
    "every replica down": [_case(_replace(
        _healthy(), _series("up", 'pod="a"', "0x60"), _series("up", 'pod="b"', "0x60"),
    ), "LLMOperatorDown", ("4m", False), ("6m", True))],
    "the standby down is no outage": [_case(_replace(
        _healthy(), _series("up", 'pod="b"', "0x60"),
    ), "LLMOperatorDown", ("30m", False))],
    "up but nobody leads": [_case(_replace(
        _healthy(), _series("llm_operator_leader", 'pod="a"', "1x9 0x50"),
    ), "LLMOperatorDown", ("12m", False), ("16m", True))],
    "the Lease moves to the standby": [_case(_replace(
        _healthy(), _series("llm_operator_leader", 'pod="a"', "1x9 0x50"),
        _series("llm_operator_leader", 'pod="b"', "0x10 1x49"),
    ), "LLMOperatorDown", ("30m", False))],
    "reconciles keep failing": [_case(_replace(
        _healthy(), _series("llm_operator_reconciles_total", 'pod="a",result="error"', "0+1x60"),
    ), "LLMOperatorReconcileErrors", ("10m", False), ("25m", True))],
    "one failed reconcile": [_case(_replace(
        _healthy(), _series("llm_operator_reconciles_total", 'pod="a",result="error"', "0x5 1x55"),
    ), "LLMOperatorReconcileErrors", ("25m", False), ("50m", False))],
    "holding while Prometheus fails": [_case(_replace(
        _healthy(),
        _series("llm_operator_autoscaler_decisions_total", 'pod="a",decision="hold"', "0+4x60"),
        _series("llm_operator_metric_source_errors_total", 'pod="a",source="prometheus"', "0+4x60"),
    ), "LLMOperatorAutoscalerHolding", ("10m", False), ("25m", True))],
    "holding on and off while Prometheus fails": [_case(_replace(
        _healthy(),
        # A burst of holds and failed reads every 8 minutes: some 5-minute windows have no hold.
        _series("llm_operator_autoscaler_decisions_total", 'pod="a",decision="hold"', BURSTS),
        _series("llm_operator_metric_source_errors_total", 'pod="a",source="prometheus"', BURSTS),
    ), "LLMOperatorAutoscalerHolding", ("40m", True))],
    "holding on and off, Prometheus answering": [_case(_replace(
        _healthy(), _series("llm_operator_autoscaler_decisions_total", 'pod="a",decision="hold"', BURSTS),
    ), "LLMOperatorAutoscalerHolding", ("40m", False))],
    "holding without Prometheus errors (metrics missing)": [_case(_replace(
        _healthy(), _series("llm_operator_autoscaler_decisions_total", 'pod="a",decision="hold"', "0+4x60"),
    ), "LLMOperatorAutoscalerHolding", ("10m", False), ("25m", True))],
    "one hold and one failed read": [_case(_replace(
        _healthy(),
        _series("llm_operator_autoscaler_decisions_total", 'pod="a",decision="hold"', "0x5 1x55"),
        _series("llm_operator_metric_source_errors_total", 'pod="a",source="prometheus"', "0x5 1x55"),
    ), "LLMOperatorAutoscalerHolding", ("15m", False), ("45m", False))],
    "another release's failures": [_case([
        *_healthy(),
        {"series": 'llm_operator_reconciles_total{job="other-llm-operator-metrics",namespace="ops",'
                   'result="error"}', "values": "0+1x60"},
    ], "LLMOperatorReconcileErrors", ("30m", False))],
}


@pytest.mark.parametrize("case", sorted(ALERT_CASES))
def test_alerts_fire_when_they_should(case: str, tmp_path: Path):
    _promtool()
    rule = prometheus_rule()
    for group in rule["spec"]["groups"]:
        for item in group["rules"]:
            item.pop("annotations", None)  # templated ($value); promtool compares them exactly
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": ALERT_CASES[case],
    }))
    result = subprocess.run([_promtool(), "test", "rules", "test.yaml"], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_watch_namespaces_gives_roles_in_those_namespaces_only():
    docs = helm_template("--set", "watchNamespaces={team-a,team-b}")
    leader_election = "rel-llm-operator-leader-election"  # the Lease's Role, in the release namespace
    roles = {doc["metadata"]["namespace"]: doc for doc in docs
             if doc["kind"] == "Role" and doc["metadata"]["name"] != leader_election}
    bindings = {doc["metadata"]["namespace"]: doc for doc in docs
                if doc["kind"] == "RoleBinding" and doc["metadata"]["name"] != leader_election}
    assert sorted(roles) == sorted(bindings) == ["team-a", "team-b"]
    for binding in bindings.values():
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-llm-operator", "namespace": "ops"}]
    [cluster_role] = [doc for doc in docs if doc["kind"] == "ClusterRole"]
    assert grants(cluster_role) == {
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
        ("", "namespaces"): {"list", "watch"},
    }
    [deployment] = [doc for doc in docs if doc["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert "--all-namespaces" not in container["args"]
    assert {"name": "WATCH_NAMESPACE", "value": "team-a,team-b"} in container["env"]


@pytest.mark.parametrize("mode", [(), ("--set", "watchNamespaces={team-a}")])
def test_rbac_never_deletes_updates_or_reads_secrets_in_bulk(mode: tuple[str, ...]):
    roles = [doc for doc in helm_template(*mode) if doc["kind"] in ("ClusterRole", "Role")]
    for role in roles:
        for rule in role["rules"]:
            verbs = set(rule["verbs"])
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    assert "*" not in verbs and group != "*" and resource != "*", role["rules"]
                    forbidden = {"delete", "deletecollection", "update", "escalate", "bind", "impersonate"}
                    if (group, resource) == ("coordination.k8s.io", "leases") and rule.get("resourceNames"):
                        forbidden.discard("update")  # renewing its own Lease, and only that one
                    assert not verbs & forbidden, f"{resource}: {verbs}"
                    if resource == "secrets":
                        assert verbs == {"get", "create"}
