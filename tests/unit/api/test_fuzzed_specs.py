"""Fuzzed LLMServices, offline: every invalid document is refused with a message naming its field, and the
operator's planner never raises, whatever a user can get past the schema.

The invalid documents come from tests/cases/fuzz.py (one field of a valid spec broken, read from the CRD's
schema), driven by hypothesis' Random so a failure shrinks to the smallest draw; tests/e2e/test_hostile_input.py
sends the same generator's documents to the real apiserver.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from cases import fuzz
from cases.invalid_llmservices import BASE_SPEC, manifest, merged
from llm_operator.api.crd import openapi_schema
from llm_operator.api.validation import validate_documents
from llm_operator.plan import Plan, make_plan

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def body(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` as the apiserver returns it to the operator: namespaced, with a uid."""
    return {**doc, "metadata": {**doc.get("metadata", {}), "namespace": "fuzz", "uid": "0000-fuzz"}}


def plan_of(doc: dict[str, Any]) -> Plan:
    return make_plan(body(doc), "0000-fuzz")


# --- invalid documents are refused ------------------------------------------------------------------------


@FUZZ
@given(mutation=st.sampled_from(sorted(fuzz.MUTATIONS)), rnd=st.randoms(use_true_random=False))
def test_every_invalid_document_is_refused_naming_its_field(mutation: str, rnd: random.Random) -> None:
    fuzzed = fuzz.invalid_document(rnd, mutation=mutation)
    note(fuzzed.describe())
    note(repr(fuzzed.manifest["spec"])[:2000])
    event(fuzzed.kind)
    problems = validate_documents([fuzzed.manifest])
    assert problems, f"accepted: {fuzzed.describe()}"
    assert any(p.field == fuzzed.field for p in problems), [str(p)[:300] for p in problems]
    assert all(p.field.startswith("spec") and p.message for p in problems), problems
    plan = plan_of(fuzzed.manifest)  # must not raise
    assert plan.problems and not plan.objects, plan
    assert any(problem.startswith(fuzzed.field + ":") for problem in plan.problems), plan.problems


def test_the_generator_covers_every_mutation_and_is_deterministic() -> None:
    first, again = fuzz.invalid_documents(7, 300), fuzz.invalid_documents(7, 300)
    assert [f.manifest for f in first] == [f.manifest for f in again]
    assert {f.kind for f in first} == set(fuzz.MUTATIONS)
    assert len({f.field for f in first}) > 60, "the fuzzer should reach most of the schema's fields"
    assert len({f.base for f in first}) > 20


def test_the_seeded_documents_are_all_refused() -> None:
    """The e2e suite's list (seed 0), offline: what the apiserver is sent must be invalid for us too."""
    for fuzzed in fuzz.invalid_documents(0, 200):
        problems = validate_documents([fuzzed.manifest])
        assert any(p.field == fuzzed.field for p in problems), (fuzzed.describe(), problems)


# --- documents generated from the schema: the planner never raises ----------------------------------------

QUANTITIES = ["0", "1", "500m", "8", "64Gi", "1.5T", "80G", ".5Ki", "1e3", "2E-2", "9Ei", "1e-5"]


def from_schema(node: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values the CRD's structural schema admits (cross-field rules aside): bounds, enums, lengths, items."""
    if node.get("x-kubernetes-int-or-string"):
        return st.one_of(st.integers(min_value=0, max_value=2**50), st.sampled_from(QUANTITIES))
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return st.sampled_from([{}, {"secretKeyRef": {"name": "s", "key": "k"}}, {"nodeAffinity": {}}])
    kind = node.get("type")
    if kind == "integer":
        return st.integers(min_value=node.get("minimum", -5), max_value=node.get("maximum", 10**7))
    if kind == "number":
        return st.floats(min_value=node.get("minimum", -5.0), max_value=node.get("maximum", 1e4),
                         exclude_min=bool(node.get("exclusiveMinimum")), allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        if "enum" in node:
            return st.sampled_from(node["enum"])
        if "pattern" in node:
            return st.from_regex(fuzz._anchored(node["pattern"])).filter(
                lambda s: len(s) <= node.get("maxLength", 10**6) and len(s) >= node.get("minLength", 0))
        return st.text(min_size=node.get("minLength", 0), max_size=min(node.get("maxLength", 40), 40))
    if kind == "array":
        return st.lists(from_schema(node["items"], depth + 1), max_size=min(node.get("maxItems", 3), 3))
    if isinstance(node.get("additionalProperties"), dict):
        return st.dictionaries(st.from_regex(r"\A[a-z][a-z0-9.-]{0,15}\Z"),
                               from_schema(node["additionalProperties"], depth + 1), max_size=2)
    properties = node.get("properties") or {}
    required = set(node.get("required", ()))
    return st.fixed_dictionaries(
        {key: from_schema(child, depth + 1) for key, child in properties.items() if key in required},
        optional={key: from_schema(child, depth + 1) for key, child in properties.items() if key not in required},
    )


SPEC_SCHEMA = openapi_schema()["properties"]["spec"]
# Mostly valid: a good base with a few fields drawn from the schema; the rest straight from the schema.
SPECS = st.one_of(
    st.builds(lambda base, extra: merged(fuzz.BASES[base], extra),
              st.sampled_from(sorted(fuzz.BASES)),
              st.fixed_dictionaries({}, optional={
                  key: from_schema(child) for key, child in SPEC_SCHEMA["properties"].items()
                  if key not in ("engine", "model")
              })),
    from_schema(SPEC_SCHEMA),
)


@FUZZ
@given(spec=SPECS)
def test_make_plan_never_raises_and_refuses_exactly_what_validation_refuses(spec: dict[str, Any]) -> None:
    doc = manifest("fuzz", spec)
    problems = validate_documents([doc])
    event("refused" if problems else "accepted")
    plan = plan_of(doc)  # must not raise
    if problems:
        assert plan.problems and not plan.objects
        return
    # Accepted: the engine's own checks (extraArgs the operator manages) may still refuse it, with a field.
    assert all(problem.startswith("spec.") for problem in plan.problems), plan.problems
    if not plan.problems:
        assert plan.service is not None and plan.fit is not None
        assert plan.objects or not plan.fit.fits


@FUZZ
@given(spec=SPECS.filter(lambda spec: not validate_documents([manifest("fuzz", spec)])))
def test_every_accepted_document_gets_a_plan(spec: dict[str, Any]) -> None:
    """The accepted documents alone (hypothesis filters the rest), so that at least 200 reach the planner."""
    plan = plan_of(manifest("fuzz", spec))
    assert all(problem.startswith("spec.") for problem in plan.problems), plan.problems


# --- gaps the fuzzer found, fixed since (see SECURITY.md) --------------------------------------------------


def test_snake_case_field_names_are_refused_like_the_apiserver_does() -> None:
    rnd = random.Random(5)
    for index in range(20):
        fuzzed = fuzz.snake_case_document(rnd, index)
        problems = validate_documents([fuzzed.manifest])
        assert any(p.field == fuzzed.field for p in problems), (fuzzed.field, problems)


def test_a_huge_exponent_quantity_is_refused_with_its_field_not_raised() -> None:
    """The CRD's pattern admits 1e1000000, so the apiserver stores it; the operator refuses it (Stalled) with
    the field, instead of overflowing on every reconcile."""
    doc = manifest("fuzz", merged(BASE_SPEC, {"resources": {"gpus": 1, "gpuMemory": "1e1000000"}}))
    problems = validate_documents([doc])
    assert [p.field for p in problems] == ["spec.resources.gpuMemory"]
    assert "out of range" in problems[0].message
    assert plan_of(doc).problems


def test_a_large_exponent_quantity_is_planned_quickly() -> None:
    tests = Path(__file__).resolve().parents[2]
    code = (f"import sys; sys.path.insert(0, {str(tests)!r}); from cases.invalid_llmservices import *; "
            "from llm_operator.plan import make_plan; "
            "doc = manifest('x', merged(BASE_SPEC, {'resources': {'gpus': 1, 'gpuMemory': '1e400000'}})); "
            "doc['metadata'].update(namespace='n', uid='u'); make_plan(doc, 'u')")
    try:
        subprocess.run([sys.executable, "-c", code], check=True, timeout=3)
    except subprocess.TimeoutExpired:
        pytest.fail("make_plan took more than 3 s for resources.gpuMemory: 1e400000")
