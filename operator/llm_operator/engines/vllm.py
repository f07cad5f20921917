"""vLLM (`vllm serve`): flags from https://docs.vllm.ai/en/stable/cli/serve.html."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llm_operator.engines.base import (
    Capabilities,
    Engine,
    EngineContainer,
    EngineMetrics,
    effective_pipeline_parallel_size,
    effective_tensor_parallel_size,
    flag,
    hf_token_env,
    multi_node,
    served_name,
    user_env,
)

if TYPE_CHECKING:
    from llm_operator.api.models import LLMService

IMAGE = "vllm/vllm-openai:v0.32.0"
PORT = 8000
CACHE_PATH = "/model-cache"


def args(service: LLMService) -> list[str]:
    """The arguments of a single-node replica: the generated flags, then serving.extraArgs."""
    return with_extra_args(service, generated_args(service))


def generated_args(service: LLMService) -> list[str]:
    spec = service.spec
    serving = spec.serving
    method = spec.quantization.method
    result = [
        spec.model.name,
        "--served-model-name", served_name(service),
        "--host", "0.0.0.0",
        "--port", str(PORT),
        *flag("--revision", spec.model.revision),
        *flag("--quantization", None if method == "none" else method),
        *flag("--max-model-len", serving.max_model_len),
        *flag("--gpu-memory-utilization", serving.gpu_memory_utilization),
        "--tensor-parallel-size", str(effective_tensor_parallel_size(spec)),
        *flag("--pipeline-parallel-size", serving.pipeline_parallel_size or (
            effective_pipeline_parallel_size(spec) if multi_node(spec) else None)),
        *flag("--max-num-seqs", serving.max_concurrent_requests),
    ]
    if serving.enable_prefix_caching is True:
        result.append("--enable-prefix-caching")
    elif serving.enable_prefix_caching is False:
        result.append("--no-enable-prefix-caching")
    return result


# Multi-node: vLLM's own multiprocessing executor, no Ray (vllm/config/parallel.py and
# vllm/entrypoints/cli/serve.py, 0.32: `--nnodes`, `--node-rank`, `--master-addr`, `--master-port` "for multi-node
# distributed inference when distributed_executor_backend is mp"; workers run `--headless`, with no API server).
# LWS_LEADER_ADDRESS and LWS_WORKER_INDEX are set in each Pod by LeaderWorkerSet's Pod webhook; the kubelet
# expands $(VAR) from the container's environment.
MASTER_PORT = 29501


def group_args(service: LLMService, rank: str) -> list[str]:
    return [
        "--distributed-executor-backend", "mp",
        "--nnodes", str(service.spec.resources.nodes),
        "--node-rank", rank,
        "--master-addr", "$(LWS_LEADER_ADDRESS)",
        "--master-port", str(MASTER_PORT),
    ]


def leader_args(service: LLMService) -> list[str]:
    return with_extra_args(service, generated_args(service) + group_args(service, "0"))


def worker_args(service: LLMService) -> list[str]:
    return with_extra_args(
        service, generated_args(service) + group_args(service, "$(LWS_WORKER_INDEX)") + ["--headless"]
    )


def with_extra_args(service: LLMService, generated: list[str]) -> list[str]:
    return generated + list(service.spec.serving.extra_args)


def container(service: LLMService) -> EngineContainer:
    env = [
        # Weights, compiled graphs and the home directory all live on the model cache, so a
        # restarted Pod with a PersistentVolumeClaim neither downloads nor recompiles.
        {"name": "HF_HOME", "value": f"{CACHE_PATH}/huggingface"},
        {"name": "VLLM_CACHE_ROOT", "value": f"{CACHE_PATH}/vllm"},
        {"name": "HOME", "value": f"{CACHE_PATH}/home"},
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
        *hf_token_env(service),
        *user_env(service),
    ]
    gpus = service.spec.resources.gpus
    several_nodes = multi_node(service.spec)
    if several_nodes:
        # The address the other nodes reach this one at (vLLM picks one itself otherwise, which in a Pod
        # with several interfaces may be the wrong one).
        env.append({"name": "VLLM_HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    return EngineContainer(
        image=service.spec.image or IMAGE,
        command=["vllm", "serve"],
        args=leader_args(service) if several_nodes else args(service),
        worker_args=worker_args(service) if several_nodes else None,
        env=env,
        port=PORT,
        health_path="/health",
        cache_mount_path=CACHE_PATH,
        metrics_path="/metrics",
        # vLLM's engine core always runs in a process of its own and talks to it through a shared-memory
        # broadcast queue (160 MiB even for one worker: the container default of 64 MiB stops it with
        # "Insufficient space in /dev/shm", seen on a real kubelet); tensor parallel workers also
        # exchange tensors there, so several GPUs get no limit.
        shm_size_limit="" if gpus > 1 else "1Gi",
    )


def problems(service: LLMService) -> list[str]:
    spec = service.spec
    if spec.quantization.method == "gguf" and not spec.model.name.endswith(".gguf"):
        return [
            f"spec.model.name: vLLM loads GGUF from a single .gguf file, not {spec.model.name!r}: "
            "name a .gguf file (a path on the model cache or a URL), or use engine ollama"
        ]
    return []


ENGINE = Engine(
    name="vllm",
    title="vLLM",
    image=IMAGE,
    service_port=PORT,
    container=container,
    upstream_model=served_name,
    managed_flags={
        "--model": "model.name", "--served-model-name": "model.servedName", "--host": None, "--port": None,
        "--tensor-parallel-size": "serving.tensorParallelSize", "--quantization": "quantization.method",
        "--pipeline-parallel-size": "serving.pipelineParallelSize", "--nnodes": "resources.nodes",
        "--node-rank": "resources.nodes", "--master-addr": "resources.nodes", "--headless": "resources.nodes",
    },
    field_docs={
        "model.name": "the model argument of `vllm serve`", "model.servedName": "--served-model-name",
        "model.revision": "--revision", "model.tokenSecretRef": "HF_TOKEN",
        "quantization.method": "--quantization <method>", "serving.maxModelLen": "--max-model-len",
        "serving.gpuMemoryUtilization": "--gpu-memory-utilization (default 0.9)",
        "serving.tensorParallelSize": "--tensor-parallel-size",
        "serving.pipelineParallelSize": "--pipeline-parallel-size",
        "serving.enablePrefixCaching": "--enable-prefix-caching (false: --no-enable-prefix-caching)",
        "serving.maxConcurrentRequests": "--max-num-seqs",
    },
    # https://docs.vllm.ai/en/stable/design/metrics.html; vLLM 0.10 renamed gpu_cache_usage_perc.
    metrics=EngineMetrics(
        waiting=("vllm:num_requests_waiting",),
        running=("vllm:num_requests_running",),
        kv_cache=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        prompt_tokens="vllm:prompt_tokens_total",
        # Counted per engine step (vllm/v1/metrics/loggers.py, 0.32: num_generation_tokens of each iteration).
        generation_tokens="vllm:generation_tokens_total",
        # vllm/v1/metrics/loggers.py (0.32): TTFT is observed at the first token, queue and prefill time when
        # the request finishes.
        first_token_seconds="vllm:time_to_first_token_seconds",
        prefill_seconds="vllm:request_prefill_time_seconds",
        queue_seconds="vllm:request_queue_time_seconds",
    ),
    capabilities=Capabilities(settings=("gpuMemoryUtilization", "enablePrefixCaching", "pipelineParallelSize"),
                              multi_node=True),
    problems=problems,
)
