"""The LLMService CustomResourceDefinition, generated from the pydantic models.

Pydantic emits JSON Schema 2020-12; Kubernetes wants a *structural* OpenAPI v3 schema. The
translation inlines every `$ref`, turns `Optional[X]` (anyOf X|null) into a plain optional X,
drops titles and `additionalProperties: false`, and rewrites numeric exclusive bounds to the
OpenAPI v3.0 boolean form.
"""

from __future__ import annotations

from typing import Any

import yaml

from llm_operator import GROUP, KIND, PLURAL, VERSION
from llm_operator.api.models import LLMService, LLMServiceSpec, LLMServiceStatus

CRD_NAME = f"{PLURAL}.{GROUP}"
SHORT_NAMES = ["llms", "llmsvc"]
CATEGORIES = ["llm"]

PRINTER_COLUMNS = [
    {"name": "Engine", "type": "string", "jsonPath": ".spec.engine", "description": "The inference server."},
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.name", "description": "The model served."},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Summary of the state."},
    {"name": "Ready", "type": "string", "jsonPath": ".status.ready",
     "description": "Ready/existing replicas."},
    {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint",
     "description": "OpenAI-compatible base URL."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

_DROPPED_KEYS = {"title", "$defs", "examples"}
_SCHEMA_KEYS = {"items", "additionalProperties"}  # keys whose value is itself a schema


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Translate one JSON Schema node (recursively) into a structural OpenAPI v3 node."""
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = _inline(node, defs)
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "properties":
            result[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        elif key == "description":
            result[key] = " ".join(value.split())  # docstrings wrap; kubectl explain re-wraps
        elif key in _SCHEMA_KEYS:
            result[key] = _structural(value, defs)
        else:  # values, not schemas: enum, default, required, x-kubernetes-validations ...
            result[key] = value
    _fix_bounds(result)
    if "properties" in result or result.get("x-kubernetes-preserve-unknown-fields"):
        result.pop("additionalProperties", None)  # pydantic's extra="forbid"; pruning does that job
    if "const" in result:
        result["enum"] = [result.pop("const")]
    return result


def _inline(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Resolve `$ref` and `anyOf: [X, null]` into one node; the outer keys win (field descriptions)."""
    node = dict(node)
    if node.get("default", ...) is None:
        del node["default"]  # Optional fields default to "absent", not to null
    if "anyOf" in node:
        branches = [branch for branch in node.pop("anyOf") if branch.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {branches}")
        node = {**_inline(branches[0], defs), **node}
    if "$ref" in node:
        target = defs[node.pop("$ref").split("/")[-1]]
        node = {**_inline(target, defs), **node}
    return node


def _fix_bounds(node: dict[str, Any]) -> None:
    # JSON Schema 2020-12 `exclusiveMinimum: 0` is OpenAPI v3.0 `minimum: 0, exclusiveMinimum: true`.
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = node.get(exclusive)
        if isinstance(value, int | float) and not isinstance(value, bool):
            node[bound] = value
            node[exclusive] = True


def _object_schema(model: type[Any]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(schema, schema.get("$defs", {}))


def openapi_schema() -> dict[str, Any]:
    """The openAPIV3Schema of the LLMService resource."""
    return {
        "type": "object",
        "description": LLMService.__doc__,
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "APIVersion defines the versioned schema of this representation of an object.",
            },
            "kind": {
                "type": "string",
                "description": "Kind is a string value representing the REST resource.",
            },
            "metadata": {"type": "object"},
            "spec": _object_schema(LLMServiceSpec),
            "status": _object_schema(LLMServiceStatus),
        },
    }


def crd_dict() -> dict[str, Any]:
    """The CustomResourceDefinition as a dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": SHORT_NAMES,
                "categories": CATEGORIES,
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


class _NoAliasDumper(yaml.SafeDumper):
    """Repeated sub-schemas are written out in full: anchors would confuse readers and diffs."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def crd_yaml() -> str:
    """The CustomResourceDefinition as YAML, with sorted keys so the output is stable."""
    header = "# Generated by `llm-operator crd` from operator/llm_operator/api/models.py. Do not edit.\n"
    body = yaml.dump(crd_dict(), Dumper=_NoAliasDumper, sort_keys=True, width=100, allow_unicode=True)
    return header + body
