from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from llm_operator.api import (
    LLMService,
    LLMServiceSpec,
    LLMServiceStatus,
    effective_tensor_parallel_size,
    served_name,
    validate_files,
)

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "manifests" / "examples").glob("*.yaml"))
MINIMAL = {"engine": "vllm", "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"}}


def load(path: Path) -> LLMService:
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return LLMService.model_validate(doc)


def test_there_are_eight_examples() -> None:
    assert len(EXAMPLES) == 8


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_parses_and_validates(path: Path) -> None:
    service = load(path)
    assert service.spec.model.name
    assert validate_files([str(path)]) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_explains_itself(path: Path) -> None:
    header = path.read_text().splitlines()[:3]
    assert all(line.startswith("#") for line in header), "each example starts with a comment on its purpose"


def test_defaults_follow_the_contract() -> None:
    spec = LLMServiceSpec.model_validate(MINIMAL)
    assert spec.quantization.method == "none"
    assert spec.resources.gpus == 1
    assert spec.resources.gpu_resource == "nvidia.com/gpu"
    assert spec.replicas == 1
    assert spec.storage is None
    assert spec.autoscaling.enabled is False
    assert (spec.autoscaling.min_replicas, spec.autoscaling.max_replicas) == (1, 4)
    assert spec.autoscaling.scale_down_delay_seconds == 300
    assert spec.router.enabled is True
    assert spec.router.routing_strategy == "least-busy"
    assert (spec.router.timeout_seconds, spec.router.num_retries) == (600, 2)
    # engine-specific settings stay unset so that the engine's own default applies
    assert spec.serving.gpu_memory_utilization is None
    assert spec.serving.max_input_tokens is None
    assert spec.serving.tensor_parallel_size is None


def test_serialises_with_the_contract_names() -> None:
    spec = LLMServiceSpec.model_validate(
        {**MINIMAL, "autoscaling": {"targetGPUUtilization": 70, "targetKVCacheUsage": 0.5}}
    )
    dumped = spec.model_dump(by_alias=True, exclude_none=True)
    assert dumped["autoscaling"]["targetGPUUtilization"] == 70
    assert dumped["autoscaling"]["targetKVCacheUsage"] == 0.5
    assert "gpuResource" in dumped["resources"]
    assert "maxReplicas" in dumped["autoscaling"]


def test_python_names_are_accepted_too() -> None:
    spec = LLMServiceSpec.model_validate({**MINIMAL, "serving": {"max_model_len": 4096}})
    assert spec.serving.max_model_len == 4096


def test_types_are_as_strict_as_the_apiserver() -> None:
    with pytest.raises(ValidationError):
        LLMServiceSpec.model_validate({**MINIMAL, "replicas": "2"})
    with pytest.raises(ValidationError):
        LLMServiceSpec.model_validate({**MINIMAL, "serving": {"enablePrefixCaching": "true"}})


def test_integers_are_accepted_where_numbers_are_expected() -> None:
    spec = LLMServiceSpec.model_validate({**MINIMAL, "serving": {"gpuMemoryUtilization": 1}})
    assert spec.serving.gpu_memory_utilization == 1.0


def test_quantities_keep_what_the_user_wrote() -> None:
    spec = LLMServiceSpec.model_validate({**MINIMAL, "resources": {"memory": "64Gi", "cpu": 8}})
    assert (spec.resources.memory, spec.resources.cpu) == ("64Gi", 8)


def test_parameter_count_helper() -> None:
    spec = LLMServiceSpec.model_validate({**MINIMAL, "model": {"name": "x", "parameters": "1.5B"}})
    assert spec.model.parameter_count() == pytest.approx(1.5e9)
    assert LLMServiceSpec.model_validate(MINIMAL).model.parameter_count() is None


def test_served_name_defaults_to_the_object_name() -> None:
    doc = {"apiVersion": "serving.llm-operator.io/v1alpha1", "kind": "LLMService",
           "metadata": {"name": "llama"}, "spec": MINIMAL}
    assert served_name(LLMService.model_validate(doc)) == "llama"
    doc["spec"] = {**MINIMAL, "model": {"name": "x", "servedName": "chat"}}
    assert served_name(LLMService.model_validate(doc)) == "chat"


@pytest.mark.parametrize(
    ("gpus", "tensor_parallel_size", "expected"), [(1, None, 1), (4, None, 4), (0, None, 1), (4, 2, 2)]
)
def test_effective_tensor_parallel_size(gpus: int, tensor_parallel_size: int | None, expected: int) -> None:
    serving = {} if tensor_parallel_size is None else {"tensorParallelSize": tensor_parallel_size}
    spec = LLMServiceSpec.model_validate({**MINIMAL, "resources": {"gpus": gpus}, "serving": serving})
    assert effective_tensor_parallel_size(spec) == expected


def test_status_round_trips() -> None:
    status = {
        "observedGeneration": 3, "phase": "Ready", "replicas": 2, "readyReplicas": 2, "desiredReplicas": 2,
        "ready": "2/2", "selector": "app.kubernetes.io/instance=llama", "endpoint": "http://llama-router.ml.svc:4000/v1",
        "lastScaleTime": "2025-01-01T00:00:00Z", "scaleReason": "queue depth 14.2 > target 5 x 2 replicas",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Serving", "message": "2/2 ready",
                        "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 3}],
    }
    parsed = LLMServiceStatus.model_validate(status)
    assert parsed.conditions[0].type == "Ready"
    assert parsed.model_dump(by_alias=True, exclude_none=True) == status
