from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_operator.api.crd import crd_dict, crd_yaml

COMMITTED = Path(__file__).resolve().parents[3] / "crds" / "llmservices.serving.llm-operator.io.yaml"
VERSION = crd_dict()["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]
SPEC = SCHEMA["properties"]["spec"]

# The only places where anything goes: Kubernetes types passed to the Pod unchanged.
PRESERVE_UNKNOWN_FIELDS = {"spec.resources.affinity", "spec.serving.env[].valueFrom"}
FORBIDDEN_KEYS = {"$ref", "$defs", "anyOf", "allOf", "oneOf", "not", "title", "const", "nullable", "uniqueItems"}


def nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node, with a readable path (`[]` for list items)."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}" if path else name)
    if isinstance(node.get("items"), dict):
        yield from nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from nodes(node["additionalProperties"], f"{path}{{}}")


def test_crd_is_current() -> None:
    assert COMMITTED.read_text() == crd_yaml(), (
        "crds/ is stale: run `llm-operator crd > crds/llmservices.serving.llm-operator.io.yaml`"
    )


def test_output_is_deterministic() -> None:
    assert crd_yaml() == crd_yaml()
    assert yaml.safe_load(crd_yaml()) == crd_dict()


def test_names_and_scope() -> None:
    crd = crd_dict()
    assert crd["metadata"]["name"] == "llmservices.serving.llm-operator.io"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["singular"]) == ("LLMService", "llmservices", "llmservice")
    assert names["shortNames"] == ["llms", "llmsvc"]
    assert names["categories"] == ["llm"]
    assert crd["spec"]["scope"] == "Namespaced"
    assert VERSION["served"] and VERSION["storage"]


def test_subresources() -> None:
    assert VERSION["subresources"]["status"] == {}
    assert VERSION["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    status = SCHEMA["properties"]["status"]["properties"]
    assert SPEC["properties"]["replicas"]["type"] == "integer"
    assert status["replicas"]["type"] == "integer"
    assert status["selector"]["type"] == "string"


def test_printer_columns() -> None:
    columns = {c["name"].upper(): c for c in VERSION["additionalPrinterColumns"]}
    assert list(columns) == ["ENGINE", "MODEL", "PHASE", "READY", "ENDPOINT", "AGE"]
    assert columns["READY"]["jsonPath"] == ".status.ready"
    assert columns["AGE"] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    for column in columns.values():  # every column points at a field of the schema
        *parents, leaf = column["jsonPath"].strip(".").split(".")
        node = SCHEMA if parents[0] != "metadata" else None
        if node is None:
            continue
        for part in parents:
            node = node["properties"][part]
        assert leaf in node["properties"], column


def test_schema_is_structural() -> None:
    for path, node in nodes(SCHEMA):
        assert not FORBIDDEN_KEYS & node.keys(), (path, FORBIDDEN_KEYS & node.keys())
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node, path
            continue
        assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, path
        if node["type"] == "object":
            has_fields = "properties" in node
            is_map = isinstance(node.get("additionalProperties"), dict)
            open_object = node.get("x-kubernetes-preserve-unknown-fields") is True
            assert has_fields or is_map or open_object or path == "metadata", path
            assert not (has_fields and "additionalProperties" in node), path
        if node["type"] == "array":
            assert isinstance(node.get("items"), dict), path
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert node.get(bound, True) is True, f"{path}: OpenAPI v3.0 wants a boolean {bound}"


def test_preserve_unknown_fields_only_where_needed() -> None:
    found = {path for path, node in nodes(SCHEMA) if node.get("x-kubernetes-preserve-unknown-fields")}
    assert found == PRESERVE_UNKNOWN_FIELDS


def test_every_spec_field_is_described() -> None:
    for path, node in nodes(SCHEMA):
        if (path.startswith(("spec", "status")) and not path.endswith(("[]", "{}"))) or "properties" in node:
            assert node.get("description"), f"{path} has no description for kubectl explain"


def test_defaults_are_in_the_schema() -> None:
    props = SPEC["properties"]
    assert props["quantization"]["default"] == {}
    assert props["quantization"]["properties"]["method"]["default"] == "none"
    assert props["resources"]["properties"]["gpus"]["default"] == 1
    assert props["router"]["properties"]["enabled"]["default"] is True
    assert "default" not in props["serving"]["properties"]["tensorParallelSize"]  # resolved by the operator
    assert "default" not in props["storage"]  # absent storage means emptyDir
    assert SPEC["required"] == ["engine", "model"]


def test_quantities_are_int_or_string_with_a_pattern() -> None:
    resources = SPEC["properties"]["resources"]["properties"]
    for quantity in (resources["cpu"], resources["memory"], resources["gpuMemory"],
                     SPEC["properties"]["storage"]["properties"]["size"]):
        assert quantity["x-kubernetes-int-or-string"] is True
        assert quantity["pattern"].startswith("^")


def validations() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for path, node in nodes(SCHEMA):
        for rule in node.get("x-kubernetes-validations", []):
            yield path, node, rule


def test_every_cel_rule_has_a_message_and_a_field_path() -> None:
    rules = list(validations())
    assert len(rules) >= 15
    for path, node, rule in rules:
        assert rule.get("message") or rule.get("messageExpression"), (path, rule)
        assert rule["reason"] in {"FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired"}
        target = node  # fieldPath names a field that exists below the rule's object
        for part in rule["fieldPath"].strip(".").split("."):
            target = target["properties"][part]


def test_engine_rules_sit_on_spec() -> None:
    engine_rules = [(path, rule["rule"]) for path, _, rule in validations() if "self.engine" in rule["rule"]]
    assert len(engine_rules) >= 6
    assert {path for path, _ in engine_rules} == {"spec"}


def test_lists_under_cel_rules_are_bounded() -> None:
    """The apiserver estimates CEL cost from maxItems/maxLength; unbounded ones can exceed the budget."""
    for path, node in nodes(SCHEMA):
        if node.get("type") == "array" and path.startswith("spec"):
            assert "maxItems" in node, path
        if node.get("type") == "string" and path.startswith("spec") and "enum" not in node:
            assert "maxLength" in node, path


@pytest.mark.parametrize("field", ["engine", "quantization", "model", "resources", "serving", "router"])
def test_top_level_spec_fields_exist(field: str) -> None:
    assert field in SPEC["properties"]
