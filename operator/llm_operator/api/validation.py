"""Offline validation: the CRD's schema and CEL rules, applied in Python to LLMService YAML.

Messages follow the apiserver's wording where they can (`Required value`, `Unsupported value`,
`must be of type integer`, `should be greater than or equal to`), so a GitOps user sees in CI
what `kubectl apply` would say.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from llm_operator import GROUP, KIND
from llm_operator.api.models import LLMService
from llm_operator.api.rules import join_path


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one LLMService."""

    document: str
    """`LLMService namespace/name` (or `LLMService #3` when it has no name)."""
    field: str
    """Path with the API's camelCase names: `spec.serving.maxInputTokens`."""
    message: str

    def __str__(self) -> str:
        return f"{self.document}: {self.field}: {self.message}"


def is_llmservice(doc: Any) -> bool:
    if not isinstance(doc, dict):
        return False
    group = str(doc.get("apiVersion", "")).split("/")[0]
    return doc.get("kind") == KIND and group == GROUP


def validate_documents(docs: Iterable[Any]) -> list[Problem]:
    """Every problem in every LLMService among `docs` (parsed YAML); other kinds are skipped."""
    problems: list[Problem] = []
    for index, doc in enumerate(docs, start=1):
        if is_llmservice(doc):
            document = _describe(doc, index)
            problems += [Problem(document, field, message) for field, message in _check(LLMService, doc, "")]
    return problems


def validate_files(paths: Iterable[str]) -> list[str]:
    """`validate_documents` over YAML files; each problem is prefixed with its file."""
    problems: list[str] = []
    for path in paths:
        try:
            docs = list(yaml.safe_load_all(Path(path).read_text()))
        except (OSError, yaml.YAMLError) as error:
            problems.append(f"{path}: {error}")
            continue
        problems += [f"{path}: {problem}" for problem in validate_documents(docs)]
    return problems


def _describe(doc: dict[str, Any], index: int) -> str:
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name, namespace = metadata.get("name"), metadata.get("namespace")
    if not name:
        return f"{KIND} #{index}"
    return f"{KIND} {namespace}/{name}" if namespace else f"{KIND} {name}"


# --- schema and rules --------------------------------------------------------------------------

FieldProblem = tuple[str, str]


def _check(model: type[BaseModel], data: Any, path: str) -> list[FieldProblem]:
    """Schema errors of `data`, then the rules of every part that is valid on its own.

    When the whole object is valid its rules run everywhere. When it is not, pydantic's
    errors are reported once, and the search goes down to the largest valid sub-objects so
    their cross-field rules still run: the user sees everything in one pass.
    """
    try:
        instance = model.model_validate(data, by_alias=True, by_name=False)  # camelCase only, as the apiserver
    except ValidationError as error:
        return [_schema_problem(detail, path) for detail in error.errors()] + _rules_of_valid_parts(
            model, data, path
        )
    return list(_rule_problems(instance, path))


def _rules_of_valid_parts(model: type[BaseModel], data: Any, path: str) -> list[FieldProblem]:
    if not isinstance(data, dict):
        return []
    problems: list[FieldProblem] = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in data:
            continue
        child_model, is_list = _nested_model(field.annotation)
        if child_model is None:
            continue
        items = enumerate(data[key]) if is_list and isinstance(data[key], list) else [(None, data[key])]
        for index, item in items:
            child_path = join_path(path, key if index is None else f"{key}[{index}]")
            problems += [p for p in _check_quietly(child_model, item, child_path)]
    return problems


def _check_quietly(model: type[BaseModel], data: Any, path: str) -> list[FieldProblem]:
    """Rule problems only: the schema errors below `path` were already reported by the parent."""
    try:
        instance = model.model_validate(data, by_alias=True, by_name=False)  # camelCase only, as the apiserver
    except ValidationError:
        return _rules_of_valid_parts(model, data, path)
    return list(_rule_problems(instance, path))


def _nested_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model type inside `X`, `X | None` or `list[X]`, and whether it is a list."""
    candidates = [annotation, *get_args(annotation)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate, False
        if get_origin(candidate) is list:
            inner, _ = _nested_model(get_args(candidate)[0])
            return inner, True
    return None, False


def _rule_problems(instance: BaseModel, path: str) -> Iterator[FieldProblem]:
    """The cross-field rules of `instance` and of every model inside it."""
    for rule in getattr(instance, "rules", ()):
        message = rule.violation(instance)
        if message is not None:
            yield join_path(path, rule.field), message
    for name, field in type(instance).model_fields.items():
        key, value = field.alias or name, getattr(instance, name)
        if isinstance(value, BaseModel):
            yield from _rule_problems(value, join_path(path, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from _rule_problems(item, join_path(path, f"{key}[{index}]"))


# --- pydantic errors in the apiserver's words ---------------------------------------------------

_TYPE_NAMES = {
    "int_type": "integer", "int_parsing": "integer", "int_from_float": "integer",
    "float_type": "number", "float_parsing": "number",
    "string_type": "string", "bool_type": "boolean", "bool_parsing": "boolean",
    "list_type": "array", "dict_type": "object", "model_type": "object", "model_attributes_type": "object",
}


def _schema_problem(detail: ErrorDetails, path: str) -> FieldProblem:
    location = _location(detail["loc"])
    field = join_path(path, location) or "(root)"
    return field, _message(detail, field)


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.startswith("function-"):
            continue  # pydantic names the validator of a custom type (Quantity) in the path
        else:
            text = join_path(text, str(part))
    return text


def _message(detail: ErrorDetails, field: str) -> str:
    kind, ctx, value = detail["type"], detail.get("ctx", {}), detail.get("input")
    if kind == "missing":
        return "Required value"
    if kind == "extra_forbidden":
        return f'unknown field "{field}"'
    if kind in _TYPE_NAMES:
        return f"Invalid value: {_quote(value)}: must be of type {_TYPE_NAMES[kind]}"
    if kind in ("literal_error", "enum"):
        expected = ctx.get("expected", "")
        supported = ", ".join(json.dumps(option.strip("'")) for option in _split_expected(expected))
        return f"Unsupported value: {_quote(value)}: supported values: {supported}"
    if kind == "string_pattern_mismatch":
        return f"Invalid value: {_quote(value)}: should match '{ctx['pattern']}'"
    if kind == "string_too_short":
        return f"Invalid value: {_quote(value)}: should be at least {ctx['min_length']} chars long"
    if kind == "string_too_long":
        return f"Too long: may not be more than {ctx['max_length']} bytes"
    if kind == "too_long":
        return f"Too many: {ctx.get('actual_length')}: must have at most {ctx['max_length']} items"
    for bound, words in (("ge", "greater than or equal to"), ("gt", "greater than"),
                         ("le", "less than or equal to"), ("lt", "less than")):
        if bound in ctx and kind.startswith(("greater", "less")):
            return f"Invalid value: {_quote(value)}: should be {words} {_number(ctx[bound])}"
    return f"Invalid value: {_quote(value)}: {detail['msg']}"


def _split_expected(expected: str) -> list[str]:
    # pydantic writes "'a', 'b' or 'c'"
    return [part.strip() for part in expected.replace(" or ", ", ").split(", ") if part.strip()]


def _quote(value: Any) -> str:
    if isinstance(value, str | int | float | bool) or value is None:
        return json.dumps(value)
    return type(value).__name__


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
