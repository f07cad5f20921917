"""Text Generation Inference (`text-generation-launcher`): flags from
https://huggingface.co/docs/text-generation-inference/reference/launcher."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llm_operator.engines.base import (
    Capabilities,
    Engine,
    EngineContainer,
    EngineMetrics,
    effective_tensor_parallel_size,
    flag,
    hf_token_env,
    user_env,
)

if TYPE_CHECKING:
    from llm_operator.api.models import LLMService

IMAGE = "ghcr.io/huggingface/text-generation-inference:3.3.5"
SERVICE_PORT = 80
# The container listens on an unprivileged port so it can run as a non-root user; the
# Service still answers on TGI's customary port 80.
CONTAINER_PORT = 8080
CACHE_PATH = "/data"


def quantize_value(method: str, bits: int | None) -> str | None:
    if method == "none":
        return None
    if method == "bitsandbytes":
        return "bitsandbytes-nf4" if bits == 4 else "bitsandbytes"
    return method


def args(service: LLMService) -> list[str]:
    spec = service.spec
    serving = spec.serving
    return [
        "--model-id", spec.model.name,
        "--hostname", "0.0.0.0",
        "--port", str(CONTAINER_PORT),
        *flag("--revision", spec.model.revision),
        *flag("--quantize", quantize_value(spec.quantization.method, spec.quantization.bits)),
        *flag("--max-total-tokens", serving.max_model_len),
        *flag("--max-input-tokens", serving.max_input_tokens),
        "--num-shard", str(effective_tensor_parallel_size(spec)),
        *flag("--max-concurrent-requests", serving.max_concurrent_requests),
        *serving.extra_args,
    ]


def container(service: LLMService) -> EngineContainer:
    env = [
        {"name": "HF_HOME", "value": CACHE_PATH},
        {"name": "HUGGINGFACE_HUB_CACHE", "value": CACHE_PATH},
        {"name": "HOME", "value": f"{CACHE_PATH}/home"},
        *hf_token_env(service),
        *user_env(service),
    ]
    return EngineContainer(
        image=service.spec.image or IMAGE,
        command=["text-generation-launcher"],
        args=args(service),
        env=env,
        port=CONTAINER_PORT,
        health_path="/health",
        cache_mount_path=CACHE_PATH,
        metrics_path="/metrics",
        shm_size_limit="1Gi",
    )


ENGINE = Engine(
    name="tgi",
    title="TGI",
    image=IMAGE,
    service_port=SERVICE_PORT,
    container=container,
    upstream_model=lambda service: "tgi",  # TGI serves one model and ignores the field
    managed_flags={
        "--model-id": "model.name", "--hostname": None, "--port": None,
        "--num-shard": "serving.tensorParallelSize", "--quantize": "quantization.method",
    },
    field_docs={
        "model.name": "--model-id", "model.servedName": "the router's alias", "model.revision": "--revision",
        "model.tokenSecretRef": "HF_TOKEN",
        "quantization.method": "--quantize <method> (bitsandbytes with bits 4 becomes bitsandbytes-nf4; no gguf)",
        "serving.maxModelLen": "--max-total-tokens", "serving.maxInputTokens": "--max-input-tokens",
        "serving.tensorParallelSize": "--num-shard", "serving.maxConcurrentRequests": "--max-concurrent-requests",
    },
    # https://huggingface.co/docs/text-generation-inference/reference/metrics
    metrics=EngineMetrics(
        waiting=("tgi_queue_size",), running=("tgi_batch_current_size",), prompt_tokens="tgi_request_input_length_sum"
    ),
    capabilities=Capabilities(
        quantization=("none", "awq", "gptq", "bitsandbytes", "fp8"),
        quantization_note="TGI cannot load GGUF models",
        settings=("maxInputTokens",),
    ),
)
