from pathlib import Path
from typing import Any

import pytest

from cases import invalid_llmservices as cases
from cases.valid_llmservices import GOOD_CASES
from llm_operator.api import models
from llm_operator.api.rules import Rule
from llm_operator.api.validation import Problem, validate_documents, validate_files

TESTS = Path(__file__).resolve().parents[2]


def problems_of(spec_patch: dict[str, Any]) -> list[str]:
    doc = cases.manifest("probe", cases.merged(cases.BASE_SPEC, spec_patch))
    return [f"{p.field}: {p.message}" for p in validate_documents([doc])]


@pytest.mark.parametrize("case", cases.INVALID_CASES, ids=lambda c: c.id)
def test_invalid_case_is_refused_with_the_expected_message(case: Any) -> None:
    problems = [str(p) for p in validate_documents([case.manifest])]
    assert problems, f"{case.id} was accepted"
    assert any(all(text in p for text in case.expected) for p in problems), problems


def test_enough_invalid_cases_for_the_issue() -> None:
    assert len(cases.INVALID_CASES) >= 28
    assert len({c.id for c in cases.INVALID_CASES}) == len(cases.INVALID_CASES)


def _all_rules() -> list[Rule]:
    found = []
    for model in vars(models).values():
        if isinstance(model, type) and issubclass(model, models.SpecModel):
            found += list(model.__dict__.get("rules", ()))
    return found


@pytest.mark.parametrize("rule", _all_rules(), ids=lambda r: r.field + ":" + r.message[:30])
def test_every_rule_has_an_invalid_case(rule: Rule) -> None:
    opening = rule.message.split("{")[0]
    refused = [str(p) for c in cases.INVALID_CASES for p in validate_documents([c.manifest])]
    assert any(opening in p and rule.field in p for p in refused), f"no invalid case breaks: {rule.message}"


@pytest.mark.parametrize("patch", GOOD_CASES.values(), ids=GOOD_CASES.keys())
def test_good_case_is_accepted(patch: dict[str, Any]) -> None:
    assert problems_of(patch) == []


def test_every_problem_is_reported_not_just_the_first() -> None:
    problems = problems_of({
        "engine": "tgi",
        "replicas": "three",                                        # schema error in spec ...
        "quantization": {"method": "awq", "variant": "Q4_K_M"},     # ... rule in a valid part
        "serving": {"maxModelLen": 100, "maxInputTokens": 200},     # another valid part with a rule
        "autoscaling": {"minReplicas": 3, "maxReplicas": 1, "bogus": 1},  # invalid part: schema only
        "router": {"fallbacks": [{"model": "a", "llmService": "b"}, {"llmService": 7}]},
    })
    assert any(p.startswith("spec.replicas: ") for p in problems)
    assert any(p.startswith("spec.quantization.variant: ") for p in problems)
    assert any(p.startswith("spec.serving.maxInputTokens: maxInputTokens (200)") for p in problems)
    assert any(p.startswith('spec.autoscaling.bogus: unknown field "spec.autoscaling.bogus"') for p in problems)
    assert any(p.startswith("spec.router.fallbacks[0].model: a fallback sets both") for p in problems)
    assert any(p.startswith("spec.router.fallbacks[1].llmService: ") for p in problems)
    assert len(problems) == 6, problems


def test_spec_rules_run_when_the_whole_spec_is_valid() -> None:
    problems = problems_of({"engine": "ollama", "model": {"name": "x"},
                            "serving": {"gpuMemoryUtilization": 0.5, "maxInputTokens": 10}})
    assert len(problems) == 2, problems


def test_other_kinds_are_skipped() -> None:
    docs = [None, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}, "spec": 1},
            {"apiVersion": "other.io/v1", "kind": "LLMService", "spec": {}}]
    assert validate_documents(docs) == []


def test_problem_names_the_object() -> None:
    doc = cases.manifest("llama", {"engine": "vllm", "model": {}})
    doc["metadata"]["namespace"] = "ml"
    (problem,) = validate_documents([doc])
    assert problem == Problem("LLMService ml/llama", "spec.model.name", "Required value")
    assert str(problem) == "LLMService ml/llama: spec.model.name: Required value"


def test_missing_spec_is_reported() -> None:
    doc = cases.manifest("llama", {})
    del doc["spec"]
    assert [str(p) for p in validate_documents([doc])] == ["LLMService llama: spec: Required value"]


def test_validate_files_reads_multi_document_yaml(tmp_path: Path) -> None:
    path = tmp_path / "services.yaml"
    path.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: unrelated}\n---\n"
        "apiVersion: serving.llm-operator.io/v1alpha1\nkind: LLMService\nmetadata: {name: a, namespace: ml}\n"
        "spec: {engine: vllm, model: {name: m}, serving: {maxInputTokens: 10}}\n---\n"
        "apiVersion: serving.llm-operator.io/v1alpha1\nkind: LLMService\nmetadata: {name: b}\n"
        "spec: {engine: ollama, model: {name: m}}\n"
    )
    (problem,) = validate_files([str(path)])
    assert problem.startswith(
        f"{path}: LLMService ml/a: spec.serving.maxInputTokens: serving.maxInputTokens is not supported"
    )


def test_validate_files_reports_unreadable_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    problems = validate_files([str(broken), str(tmp_path / "missing.yaml")])
    assert len(problems) == 2
    assert problems[0].startswith(f"{broken}: ")


def test_cli_validate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from llm_operator.cli import main

    good = sorted((TESTS.parent / "manifests" / "examples").glob("*.yaml"))
    assert main(["validate", "-f", *map(str, good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: serving.llm-operator.io/v1alpha1\nkind: LLMService\nmetadata: {name: x}\n"
                   "spec: {engine: tgi, model: {name: m}, quantization: {method: gguf}}\n")
    assert main(["validate", "-f", str(bad)]) == 1
    assert "spec.quantization.method: TGI cannot load GGUF" in capsys.readouterr().err
