"""Valid spec patches next to the invalid cases: the same fields, used the way each rule allows.

Each is merged into `BASE_SPEC`; the unit suite validates them offline, the e2e suite sends
them to the apiserver, so a rule that refuses too much fails both.
"""

from __future__ import annotations

from typing import Any

from cases.invalid_llmservices import BASE_SPEC, FALLBACK_KEY, manifest, merged

GOOD_CASES: dict[str, dict[str, Any]] = {
    "ollama-with-gguf": {"engine": "ollama", "model": {"name": "qwen2.5:7b"},
                         "quantization": {"method": "gguf", "variant": "Q4_K_M"}},
    "ollama-with-none": {"engine": "ollama", "model": {"name": "qwen2.5:7b"}, "quantization": {"method": "none"}},
    "vllm-with-gguf": {"quantization": {"method": "gguf", "variant": "Q4_K_M", "bits": 4}},
    "tgi-with-awq": {"engine": "tgi", "quantization": {"method": "awq"}},
    "tgi-with-max-input-tokens": {"engine": "tgi", "serving": {"maxModelLen": 8192, "maxInputTokens": 4096}},
    "max-input-tokens-without-max-model-len": {"engine": "tgi", "serving": {"maxInputTokens": 4096}},
    "vllm-with-gpu-memory-utilization-1": {"serving": {"gpuMemoryUtilization": 1}},
    "vllm-with-prefix-caching": {"serving": {"enablePrefixCaching": True}},
    "tgi-with-prefix-caching-false": {"engine": "tgi", "serving": {"enablePrefixCaching": False}},
    "ollama-with-tensor-parallel-1": {"engine": "ollama", "model": {"name": "x"}, "serving": {"tensorParallelSize": 1}},
    "tensor-parallel-equal-to-gpus": {"resources": {"gpus": 4}, "serving": {"tensorParallelSize": 4}},
    "tensor-parallel-on-cpu-is-not-compared": {"resources": {"gpus": 0}, "serving": {"tensorParallelSize": 2}},
    "vllm-on-two-nodes": {"resources": {"gpus": 8, "nodes": 2, "gpuProduct": "NVIDIA-H100-80GB-HBM3"}},
    "vllm-on-two-nodes-tensor-parallel-across": {"resources": {"gpus": 8, "nodes": 2},
                                                 "serving": {"tensorParallelSize": 16}},
    "vllm-on-two-nodes-explicit-layout": {"resources": {"gpus": 8, "nodes": 2},
                                          "serving": {"tensorParallelSize": 8, "pipelineParallelSize": 2}},
    "vllm-pipeline-within-a-node": {"resources": {"gpus": 4}, "serving": {"tensorParallelSize": 2,
                                                                          "pipelineParallelSize": 2}},
    "vllm-on-two-nodes-shared-cache": {"resources": {"gpus": 8, "nodes": 2},
                                       "storage": {"size": "1Ti", "accessMode": "ReadWriteMany"}},
    "tgi-on-one-node": {"engine": "tgi", "resources": {"nodes": 1}},
    "sglang-on-two-nodes": {"engine": "sglang", "resources": {"gpus": 8, "nodes": 2}},
    "sglang-on-two-nodes-tensor-parallel-across": {"engine": "sglang", "resources": {"gpus": 8, "nodes": 2},
                                                   "serving": {"tensorParallelSize": 16}},
    "min-replicas-equal-max": {"autoscaling": {"minReplicas": 2, "maxReplicas": 2}},
    "scale-to-zero": {"autoscaling": {"enabled": True, "minReplicas": 0, "maxReplicas": 1}},
    "bitsandbytes-4": {"quantization": {"method": "bitsandbytes", "bits": 4}},
    "bitsandbytes-8": {"quantization": {"method": "bitsandbytes", "bits": 8}},
    "gpu-product-with-gpus": {"resources": {"gpus": 1, "gpuProduct": "NVIDIA-L4", "gpuMemory": "24Gi"}},
    "empty-gpu-product-on-cpu": {"resources": {"gpus": 0, "gpuProduct": ""}},
    "model-fallback-with-key": {"router": {"fallbacks": [
        {"model": "openai/gpt-4o", "apiBase": "https://example.com/v1", "apiKeySecretRef": FALLBACK_KEY},
        {"llmService": "llama3-8b"},
        {"llmService": "other", "apiBase": ""},
    ]}},
    "eight-fallbacks": {"router": {"fallbacks": [{"llmService": f"svc-{i}"} for i in range(8)]}},
    "quantities-as-integers": {"resources": {"cpu": 8, "memory": 68719476736, "gpuMemory": "80G"}},
    "pass-through-kubernetes-fields": {"resources": {
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"anything": ["is", "passed", "through"]}},
    }, "serving": {"env": [{"name": "A", "value": "1"},
                           {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}},
}


def good_manifests() -> list[tuple[str, dict[str, Any]]]:
    return [(name, manifest(f"good-{name}", merged(BASE_SPEC, patch))) for name, patch in GOOD_CASES.items()]
