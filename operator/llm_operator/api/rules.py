"""Cross-field rules, written once and enforced twice: as CEL in the CRD and in Python offline.

A `Rule` sits on the model whose object holds every field it reads (`self` in CEL, the model
instance in Python). Its message is a template whose `{placeholders}` are filled from `values`,
each a CEL expression and its Python twin, so the apiserver (through `messageExpression`) and
`llm-operator validate` print the same sentence with the same values.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Reason = Literal["FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired"]


@dataclass(frozen=True)
class Value:
    """A value quoted in a message: how CEL computes it, and how Python does."""

    cel: str
    python: Callable[[Any], object]


@dataclass(frozen=True)
class Rule:
    """One cross-field rule on one object."""

    field: str
    """The offending field, relative to the object the rule sits on (`serving.maxInputTokens`)."""
    cel: str
    """The CEL expression, true when the object is valid."""
    valid: Callable[[Any], bool]
    """Its Python twin, on the pydantic model instance."""
    message: str
    """What is wrong, the value, and the fix; `{name}` placeholders come from `values`."""
    values: Mapping[str, Value] = field(default_factory=dict)
    reason: Reason = "FieldValueInvalid"

    def placeholders(self) -> list[str]:
        return [name for _, name, _, _ in string.Formatter().parse(self.message) if name]

    def static_message(self) -> str:
        """The message without values, which the apiserver shows if messageExpression fails."""
        return self.message.format_map({name: f"<{name}>" for name in self.placeholders()})

    def message_expression(self) -> str | None:
        """The message template as CEL, or None when it quotes no value.

        It is one `format()` call: concatenating `string(x)` would make the apiserver estimate
        an unbounded string and refuse the CRD for exceeding the CEL cost budget.
        """
        if not self.values:
            return None
        pattern, arguments = "", []
        for literal, name, _, _ in string.Formatter().parse(self.message):
            pattern += literal.replace("%", "%%")
            if name:
                pattern += "%s"
                arguments.append(self.values[name].cel)
        return f"{_cel_string_literal(pattern)}.format([{', '.join(arguments)}])"

    def to_cel(self) -> dict[str, Any]:
        """The `x-kubernetes-validations` entry."""
        entry: dict[str, Any] = {
            "rule": self.cel,
            "message": self.static_message(),
            "fieldPath": "." + self.field,
            "reason": self.reason,
        }
        expression = self.message_expression()
        if expression:
            entry["messageExpression"] = expression
        return entry

    def violation(self, obj: Any) -> str | None:
        """The message when `obj` breaks the rule, else None."""
        if self.valid(obj):
            return None
        return self.message.format_map(
            {name: _as_cel_string(value.python(obj)) for name, value in self.values.items()}
        )


def _cel_string_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _as_cel_string(value: object) -> str:
    """Python's rendering of a value as CEL's `%s` renders it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def join_path(parent: str, child: str) -> str:
    """`spec` + `serving.maxInputTokens` -> `spec.serving.maxInputTokens`; `[0]` attaches directly."""
    if not parent:
        return child
    if re.match(r"^\[", child):
        return parent + child
    return f"{parent}.{child}"
