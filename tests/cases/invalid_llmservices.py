"""Invalid LLMServices and what each must be told, shared by the unit and e2e suites.

Each case is refused twice: offline by `validate_documents` (tests/unit/api) and by the real
apiserver through the generated CRD (tests/e2e/test_crd.py). Every substring in `expected` must
appear in both messages: the field path, and words both sides use (the apiserver's wording for
schema errors, which `validate` copies; our own CEL messages for cross-field rules).
"""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

API_VERSION = "serving.llm-operator.io/v1alpha1"
BASE_SPEC: dict[str, Any] = {"engine": "vllm", "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"}}
FALLBACK_KEY = {"name": "openai", "key": "api-key"}


class InvalidCase(NamedTuple):
    id: str
    manifest: dict[str, Any]
    expected: tuple[str, ...]


def manifest(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "LLMService", "metadata": {"name": name}, "spec": spec}


def merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`base` with `patch` merged in, recursively for dicts."""
    result = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def case(case_id: str, patch: dict[str, Any], *expected: str) -> InvalidCase:
    """A valid vLLM spec with `patch` merged in."""
    return InvalidCase(case_id, manifest(f"bad-{case_id}", merged(BASE_SPEC, patch)), expected)


def raw_case(case_id: str, spec: dict[str, Any], *expected: str) -> InvalidCase:
    """A spec used exactly as given, for missing required fields."""
    return InvalidCase(case_id, manifest(f"bad-{case_id}", spec), expected)


INVALID_CASES: list[InvalidCase] = [
    # --- wrong types ---
    case("gpus-string", {"resources": {"gpus": "2"}}, "spec.resources.gpus", "must be of type integer"),
    case("max-model-len-string", {"serving": {"maxModelLen": "16k"}},
         "spec.serving.maxModelLen", "must be of type integer"),
    case("prefix-caching-string", {"serving": {"enablePrefixCaching": "yes"}},
         "spec.serving.enablePrefixCaching", "must be of type boolean"),
    case("gpu-memory-utilization-string", {"serving": {"gpuMemoryUtilization": "90%"}},
         "spec.serving.gpuMemoryUtilization", "must be of type number"),
    case("model-string", {"model": "meta-llama/Llama-3.1-8B-Instruct"}, "spec.model", "must be of type object"),
    case("extra-args-string", {"serving": {"extraArgs": "--enforce-eager"}},
         "spec.serving.extraArgs", "must be of type array"),
    # --- formats ---
    case("image-upper-case", {"image": "Registry.example.com/VLLM:latest"}, "spec.image", "should match"),
    case("image-with-space", {"image": "vllm/vllm-openai v0.32.0"}, "spec.image", "should match"),
    case("router-image-scheme", {"router": {"image": "https://ghcr.io/berriai/litellm"}},
         "spec.router.image", "should match"),
    case("pull-secret-bad-name", {"imagePullSecrets": [{"name": "Reg_Cred"}]},
         "spec.imagePullSecrets[0].name", "should match"),
    case("memory-not-a-quantity", {"resources": {"memory": "64 GB"}}, "spec.resources.memory", "should match"),
    case("parameters-not-a-count", {"model": {"parameters": "lots"}}, "spec.model.parameters", "should match"),
    case("gguf-variant-with-space", {"quantization": {"method": "gguf", "variant": "Q4 K M"}},
         "spec.quantization.variant", "should match"),
    # --- enums ---
    case("unknown-engine", {"engine": "llamacpp"}, "spec.engine", 'Unsupported value: "llamacpp"'),
    case("unknown-quantization", {"quantization": {"method": "int4"}},
         "spec.quantization.method", 'Unsupported value: "int4"'),
    case("unknown-routing-strategy", {"router": {"routingStrategy": "round-robin"}},
         "spec.router.routingStrategy", 'Unsupported value: "round-robin"'),
    # --- out of range ---
    case("negative-gpus", {"resources": {"gpus": -1}},
         "spec.resources.gpus", "should be greater than or equal to 0"),
    case("negative-replicas", {"replicas": -1}, "spec.replicas", "should be greater than or equal to 0"),
    case("gpu-memory-utilization-above-1", {"serving": {"gpuMemoryUtilization": 1.5}},
         "spec.serving.gpuMemoryUtilization", "should be less than or equal to 1"),
    case("gpu-memory-utilization-zero", {"serving": {"gpuMemoryUtilization": 0}},
         "spec.serving.gpuMemoryUtilization", "should be greater than 0"),
    case("gpu-utilization-target-above-100", {"autoscaling": {"targetGPUUtilization": 150}},
         "spec.autoscaling.targetGPUUtilization", "should be less than or equal to 100"),
    case("zero-max-model-len", {"serving": {"maxModelLen": 0}},
         "spec.serving.maxModelLen", "should be greater than or equal to 1"),
    case("too-many-fallbacks", {"router": {"fallbacks": [{"llmService": f"svc-{i}"} for i in range(9)]}},
         "spec.router.fallbacks", "must have at most 8 items"),
    # --- unknown fields (the apiserver refuses them under kubectl --validate=strict) ---
    case("unknown-serving-field", {"serving": {"maxTokens": 4096}},
         "unknown field", "spec.serving.maxTokens"),
    case("gpus-at-spec-level", {"gpus": 1}, "unknown field", "spec.gpus"),
    case("unknown-fallback-field", {"router": {"fallbacks": [{"model": "openai/gpt-4o", "apiKey": "sk-x"}]}},
         "unknown field", "spec.router.fallbacks[0].apiKey"),
    # --- missing required fields ---
    raw_case("missing-model-name", {"engine": "vllm", "model": {}}, "spec.model.name", "Required value"),
    case("empty-model-name", {"model": {"name": ""}}, "spec.model.name", "should be at least 1 chars long"),
    raw_case("missing-model", {"engine": "vllm"}, "spec.model", "Required value"),
    raw_case("missing-engine", {"model": {"name": "meta-llama/Llama-3.1-8B-Instruct"}},
             "spec.engine", "Required value"),
    case("storage-without-size", {"storage": {"storageClassName": "fast"}}, "spec.storage.size", "Required value"),
    case("token-secret-without-key", {"model": {"tokenSecretRef": {"name": "hf-token"}}},
         "spec.model.tokenSecretRef.key", "Required value"),
    # --- engine x quantization ---
    case("ollama-with-awq", {"engine": "ollama", "model": {"name": "llama3.1:8b"}, "quantization": {"method": "awq"}},
         "spec.quantization.method", "Ollama serves GGUF models only",
         "quantization.method awq cannot be used with engine ollama", "set none or gguf",
         "an engine that loads awq: vllm, tgi or sglang"),
    case("ollama-with-fp8", {"engine": "ollama", "model": {"name": "llama3.1:8b"}, "quantization": {"method": "fp8"}},
         "spec.quantization.method", "quantization.method fp8 cannot be used"),
    case("tgi-with-gguf", {"engine": "tgi", "quantization": {"method": "gguf"}},
         "spec.quantization.method", "TGI cannot load GGUF models", "an engine that loads gguf: vllm or ollama"),
    case("sglang-with-gguf", {"engine": "sglang", "quantization": {"method": "gguf"}},
         "spec.quantization.method", "quantization.method gguf cannot be used with engine sglang"),
    # --- fields of one engine ---
    case("vllm-with-max-input-tokens", {"serving": {"maxModelLen": 8192, "maxInputTokens": 4096}},
         "spec.serving.maxInputTokens", "serving.maxInputTokens is not supported by engine vllm", "or use engine tgi"),
    case("ollama-with-max-input-tokens",
         {"engine": "ollama", "model": {"name": "llama3.1:8b"}, "serving": {"maxInputTokens": 4096}},
         "spec.serving.maxInputTokens", "not supported by engine ollama"),
    case("sglang-with-max-input-tokens", {"engine": "sglang", "serving": {"maxModelLen": 8192, "maxInputTokens": 4096}},
         "spec.serving.maxInputTokens", "not supported by engine sglang"),
    case("tgi-with-gpu-memory-utilization", {"engine": "tgi", "serving": {"gpuMemoryUtilization": 0.9}},
         "spec.serving.gpuMemoryUtilization", "not supported by engine tgi", "or use engine vllm or sglang"),
    case("ollama-with-gpu-memory-utilization",
         {"engine": "ollama", "model": {"name": "llama3.1:8b"}, "serving": {"gpuMemoryUtilization": 0.9}},
         "spec.serving.gpuMemoryUtilization", "not supported by engine ollama"),
    case("tgi-with-prefix-caching", {"engine": "tgi", "serving": {"enablePrefixCaching": True}},
         "spec.serving.enablePrefixCaching", "true is not supported by engine tgi"),
    case("ollama-with-prefix-caching",
         {"engine": "ollama", "model": {"name": "llama3.1:8b"}, "serving": {"enablePrefixCaching": True}},
         "spec.serving.enablePrefixCaching", "true is not supported by engine ollama"),
    case("ollama-with-tensor-parallel",
         {"engine": "ollama", "model": {"name": "llama3.1:70b"}, "resources": {"gpus": 2},
          "serving": {"tensorParallelSize": 2}},
         "spec.serving.tensorParallelSize", "engine ollama cannot split a model across GPUs", "not 2"),
    # --- cross-field numbers ---
    case("tensor-parallel-above-gpus", {"resources": {"gpus": 2}, "serving": {"tensorParallelSize": 4}},
         "spec.serving.tensorParallelSize", "serving.tensorParallelSize (4)", "resources.gpus (2)"),
    # --- multi-node serving ---
    case("tgi-on-two-nodes", {"engine": "tgi", "resources": {"gpus": 8, "nodes": 2}},
         "spec.resources.nodes", "engine tgi serves a replica on one node", "not 2", "use engine vllm"),
    case("ollama-on-two-nodes", {"engine": "ollama", "model": {"name": "llama3.1:405b"},
                                 "resources": {"gpus": 8, "nodes": 2}},
         "spec.resources.nodes", "engine ollama serves a replica on one node"),
    case("sglang-pipeline-not-filling-group",
         {"engine": "sglang", "resources": {"gpus": 8, "nodes": 2}, "serving": {"pipelineParallelSize": 4}},
         "spec.serving.pipelineParallelSize", "(8 x 4) must use exactly", "= 16"),
    case("nodes-without-gpus", {"resources": {"gpus": 0, "nodes": 2}},
         "spec.resources.gpus", "resources.nodes (2)", "resources.gpus is 0"),
    case("tensor-parallel-not-dividing-group",
         {"resources": {"gpus": 8, "nodes": 2}, "serving": {"tensorParallelSize": 3}},
         "spec.serving.tensorParallelSize", "(3) must divide", "= 16"),
    case("pipeline-not-filling-group",
         {"resources": {"gpus": 8, "nodes": 2}, "serving": {"tensorParallelSize": 8, "pipelineParallelSize": 3}},
         "spec.serving.pipelineParallelSize", "(8 x 3) must use exactly", "= 16"),
    case("pipeline-beyond-one-node", {"resources": {"gpus": 4}, "serving": {"pipelineParallelSize": 2}},
         "spec.serving.pipelineParallelSize", "(4 x 2) must use at most", "= 4"),
    case("tgi-with-pipeline-parallel",
         {"engine": "tgi", "resources": {"gpus": 4}, "serving": {"pipelineParallelSize": 2}},
         "spec.serving.pipelineParallelSize", "not supported by engine tgi"),
    case("two-nodes-with-read-write-once-cache", {"resources": {"gpus": 8, "nodes": 2}, "storage": {"size": "1Ti"}},
         "spec.storage.accessMode", "storage.accessMode is ReadWriteOnce", "ReadWriteMany"),
    case("nodes-zero", {"resources": {"nodes": 0}}, "spec.resources.nodes", "should be greater than or equal to 1"),
    case("max-input-tokens-not-below-max-model-len",
         {"engine": "tgi", "serving": {"maxModelLen": 4096, "maxInputTokens": 4096}},
         "spec.serving.maxInputTokens", "maxInputTokens (4096) must be less than maxModelLen (4096)"),
    case("min-replicas-above-max", {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}},
         "spec.autoscaling.minReplicas", "minReplicas (5) must not exceed maxReplicas (2)"),
    # --- quantization details ---
    case("variant-without-gguf", {"quantization": {"method": "awq", "variant": "Q4_K_M"}},
         "spec.quantization.variant", "variant Q4_K_M is a GGUF quantization type, but quantization.method is awq"),
    case("bits-with-awq", {"quantization": {"method": "awq", "bits": 4}},
         "spec.quantization.bits", "bits is only set for method bitsandbytes (4 or 8) or gguf; method awq"),
    case("bitsandbytes-with-6-bits", {"quantization": {"method": "bitsandbytes", "bits": 6}},
         "spec.quantization.bits", "bitsandbytes quantizes to 4 bits (NF4) or 8 bits (int8), not 6"),
    # --- GPUs ---
    case("gpu-product-on-cpu", {"resources": {"gpus": 0, "gpuProduct": "NVIDIA-H100-80GB-HBM3"}},
         "spec.resources.gpuProduct", "gpuProduct NVIDIA-H100-80GB-HBM3 selects a GPU node, but gpus is 0"),
    case("gpu-memory-on-cpu", {"resources": {"gpus": 0, "gpuMemory": "80Gi"}},
         "spec.resources.gpuMemory", "gpuMemory sizes GPUs for the fit check, but gpus is 0"),
    # --- fallbacks ---
    case("fallback-with-both-targets",
         {"router": {"fallbacks": [{"model": "openai/gpt-4o", "llmService": "llama3-8b"}]}},
         "spec.router.fallbacks[0].model", "a fallback sets both model and llmService: set exactly one"),
    case("fallback-with-no-target", {"router": {"fallbacks": [{"apiBase": "https://api.example.com/v1"}]}},
         "spec.router.fallbacks[0].model", "a fallback sets neither model nor llmService: set exactly one"),
    case("llmservice-fallback-with-api-key",
         {"router": {"fallbacks": [{"model": "openai/gpt-4o", "apiKeySecretRef": FALLBACK_KEY},
                                   {"llmService": "llama3-8b", "apiKeySecretRef": FALLBACK_KEY}]}},
         "spec.router.fallbacks[1].apiKeySecretRef", "this fallback is llmService llama3-8b"),
]
