"""The CEL rules and their Python twins must agree: evaluate both on the same objects.

Needs cel-python (`pip install cel-python`); skipped without it. The e2e suite checks the
same rules against the real apiserver.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from cases.invalid_llmservices import BASE_SPEC, INVALID_CASES, merged
from cases.valid_llmservices import GOOD_CASES
from llm_operator.api import models
from llm_operator.api.models import LLMServiceSpec
from llm_operator.api.rules import Rule

celpy = pytest.importorskip("celpy")
ENVIRONMENT = celpy.Environment()


def evaluate(expression: str, obj: dict[str, Any]) -> Any:
    program = ENVIRONMENT.program(ENVIRONMENT.compile(expression))
    return program.evaluate({"self": celpy.json_to_cel(obj)})


def table_specs() -> Iterator[LLMServiceSpec]:
    """Every spec of the test tables that passes the schema (the apiserver runs CEL on those)."""
    candidates = [case.manifest["spec"] for case in INVALID_CASES]
    candidates += [merged(BASE_SPEC, patch) for patch in GOOD_CASES.values()]
    for spec in candidates:
        try:
            yield LLMServiceSpec.model_validate(spec)
        except ValidationError:
            continue


def objects_of(model: BaseModel, kind: type[BaseModel]) -> Iterator[BaseModel]:
    """Every object of type `kind` in `model`, itself included."""
    if isinstance(model, kind):
        yield model
    for name in type(model).model_fields:
        value = getattr(model, name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, BaseModel):
                yield from objects_of(item, kind)


RULES = [
    (model, rule)
    for model in vars(models).values()
    if isinstance(model, type) and issubclass(model, models.SpecModel)
    for rule in model.__dict__.get("rules", ())
]
SPECS = list(table_specs())


@pytest.mark.parametrize(("model", "rule"), RULES, ids=[f"{m.__name__}.{r.field}" for m, r in RULES])
def test_cel_agrees_with_python(model: type[BaseModel], rule: Rule) -> None:
    objects = [obj for spec in SPECS for obj in objects_of(spec, model)]
    outcomes = set()
    for obj in objects:
        as_the_apiserver_sees_it = obj.model_dump(by_alias=True, exclude_none=True)
        valid = rule.valid(obj)
        outcomes.add(valid)
        assert bool(evaluate(rule.cel, as_the_apiserver_sees_it)) == valid, as_the_apiserver_sees_it
        if not valid:  # the values quoted in the message: CEL computes what Python computes
            for value in rule.values.values():
                assert str(evaluate(value.cel, as_the_apiserver_sees_it)) == str(value.python(obj))
    assert outcomes == {True, False}, "the test tables should both keep and break this rule"
