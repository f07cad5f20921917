"""The Helm chart, offline: its CRD cannot drift from crds/, its values.yaml satisfies its
values.schema.json, the schema refuses what the chart cannot do, and (when helm is installed)
the templates render the RBAC the operator needs and nothing more.

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


def _is_type(value: Any, name: str) -> bool:
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
        ({"replicaCount": 2}, "kopf peering is not supported"),
        ({"replicaCount": -1}, "negative replicas"),
        ({"watchNamespaces": ["Team_A"]}, "not a namespace name"),
        ({"watchNamespaces": ["a", "a"]}, "duplicate namespace"),
        ({"extraArgs": ["--peering=x"]}, "peering is not supported"),
        ({"extraArgs": ["--all-namespaces"]}, "scope comes from watchNamespaces"),
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
        [_helm(), "template", "rel", str(CHART), "--set", "replicaCount=2"], capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert "replicaCount" in result.stderr


def test_all_namespaces_by_default_with_one_cluster_role():
    docs = helm_template()
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "ServiceAccount"]
    [deployment] = [doc for doc in docs if doc["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/llm-operator/llm-operator:0.1.0"
    assert container["args"] == [
        "run", "--all-namespaces", "--log-level=info",
        "--prometheus-url=http://prometheus-operated.monitoring.svc:9090", "--autoscale-interval=15",
        "--liveness=http://0.0.0.0:8080/healthz",
    ]
    assert "WATCH_NAMESPACE" not in {env["name"] for env in container["env"]}
    [role] = [doc for doc in docs if doc["kind"] == "ClusterRole"]
    assert ("", "namespaces") not in grants(role)  # kopf reads Namespaces only when given a list


def test_watch_namespaces_gives_roles_in_those_namespaces_only():
    docs = helm_template("--set", "watchNamespaces={team-a,team-b}")
    roles = {doc["metadata"]["namespace"]: doc for doc in docs if doc["kind"] == "Role"}
    bindings = {doc["metadata"]["namespace"]: doc for doc in docs if doc["kind"] == "RoleBinding"}
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
        for (group, resource), verbs in grants(role).items():
            assert "*" not in verbs and group != "*" and resource != "*", role["rules"]
            assert not verbs & {"delete", "deletecollection", "update", "escalate", "bind", "impersonate"}, (
                f"{resource}: {verbs}"
            )
            if resource == "secrets":
                assert verbs == {"get", "create"}
