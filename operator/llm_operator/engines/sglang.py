"""SGLang (`python3 -m sglang.launch_server`), release 0.5.23 (2026-10-30).

Flags, endpoints and metrics were checked in the sglang 0.5.23 wheel from PyPI (the release's own
code): flags are the fields of `sglang/srt/arg_groups/fields/*.py` (`--model-path`, `--served-model-name`,
`--tp-size`, `--context-length`, `--mem-fraction-static`, `--quantization`, `--revision`,
`--max-running-requests`, `--disable-radix-cache`, `--enable-metrics`, `--host` whose default 127.0.0.1
would refuse the kubelet's probes, `--port` default 30000); `/health`, `/v1/models` and, with
`--enable-metrics` only, `/metrics` on the same port (`sglang/srt/entrypoints/http_server.py`); metric
names in `sglang/srt/observability/metrics_collector.py`. Docs: https://docs.sglang.ai.

Across nodes (`resources.nodes` > 1): every Pod of a LeaderWorkerSet group runs the same command with
`--nnodes`, `--node-rank` and `--dist-init-addr` (`sglang/srt/arg_groups/fields/parallel.py`); a node of rank
1 or more runs its schedulers only and serves no HTTP (`sglang/srt/entrypoints/http_server.py`, "node_rank >=
1"), so the API, /health and /metrics are the leader's. LeaderWorkerSet's own SGLang example
(sigs.k8s.io/lws v0.8.0, docs/examples/sglang/lws.yaml) starts its groups the same way.

The image (`lmsysorg/sglang`, https://hub.docker.com/r/lmsysorg/sglang) has no serving entrypoint: the
official Kubernetes example sets `python3 -m sglang.launch_server` as the command, and so does this module.
"""

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

IMAGE = "lmsysorg/sglang:v0.5.23"
PORT = 30000
CACHE_PATH = "/model-cache"


# The port of torch.distributed's rendezvous on the leader (the LWS example's); NCCL picks its own.
DIST_INIT_PORT = 20000


def args(service: LLMService) -> list[str]:
    """The arguments of a single-node replica: the generated flags, then serving.extraArgs."""
    return generated_args(service) + list(service.spec.serving.extra_args)


def group_args(service: LLMService, rank: str) -> list[str]:
    """The flags that make one Pod a node of a group. LWS_LEADER_ADDRESS and LWS_WORKER_INDEX are set in each
    Pod by LeaderWorkerSet's Pod webhook; the kubelet expands $(VAR) from the container's environment."""
    return [
        "--nnodes", str(service.spec.resources.nodes),
        "--node-rank", rank,
        "--dist-init-addr", f"$(LWS_LEADER_ADDRESS):{DIST_INIT_PORT}",
    ]


def leader_args(service: LLMService) -> list[str]:
    return generated_args(service) + group_args(service, "0") + list(service.spec.serving.extra_args)


def worker_args(service: LLMService) -> list[str]:
    return (generated_args(service) + group_args(service, "$(LWS_WORKER_INDEX)")
            + list(service.spec.serving.extra_args))


def generated_args(service: LLMService) -> list[str]:
    spec = service.spec
    serving = spec.serving
    method = spec.quantization.method
    result = [
        "--model-path", spec.model.name,
        "--served-model-name", served_name(service),
        "--host", "0.0.0.0",
        "--port", str(PORT),
        "--tp-size", str(effective_tensor_parallel_size(spec)),
        *flag("--pp-size", serving.pipeline_parallel_size or (
            effective_pipeline_parallel_size(spec) if multi_node(spec) else None)),
        # /metrics exists only with this flag, and the autoscaler reads it.
        "--enable-metrics",
        *flag("--revision", spec.model.revision),
        *flag("--quantization", None if method == "none" else method),
        *flag("--context-length", serving.max_model_len),
        *flag("--mem-fraction-static", serving.gpu_memory_utilization),
        *flag("--max-running-requests", serving.max_concurrent_requests),
    ]
    # Prefix caching (RadixAttention) is on by default; false turns it off.
    if serving.enable_prefix_caching is False:
        result.append("--disable-radix-cache")
    return result


def container(service: LLMService) -> EngineContainer:
    env = [
        # Weights (huggingface_hub's cache) and the home directory (Triton and FlashInfer kernel caches)
        # live on the model cache, so a restarted Pod with a PersistentVolumeClaim reuses both.
        {"name": "HF_HOME", "value": f"{CACHE_PATH}/huggingface"},
        {"name": "HOME", "value": f"{CACHE_PATH}/home"},
        *hf_token_env(service),
        *user_env(service),
    ]
    gpus = service.spec.resources.gpus
    several_nodes = multi_node(service.spec)
    return EngineContainer(
        image=service.spec.image or IMAGE,
        command=["python3", "-m", "sglang.launch_server"],
        args=leader_args(service) if several_nodes else args(service),
        worker_args=worker_args(service) if several_nodes else None,
        env=env,
        port=PORT,
        # Connection refused while the model loads, 503 during warm-up, then 200 (a one-token generation
        # when idle, skipped when the server is busy): the startup probe's long budget covers the load.
        health_path="/health",
        cache_mount_path=CACHE_PATH,
        metrics_path="/metrics",
        # Tensor-parallel ranks exchange tensors through /dev/shm (SGLang's examples use --shm-size 32g or
        # the host's IPC), and even one rank keeps its load snapshots there.
        shm_size_limit="" if gpus > 1 else "1Gi",
    )


ENGINE = Engine(
    name="sglang",
    title="SGLang",
    image=IMAGE,
    service_port=PORT,
    container=container,
    upstream_model=served_name,
    managed_flags={
        "--model-path": "model.name", "--model": "model.name", "--served-model-name": "model.servedName",
        "--host": None, "--port": None, "--tp-size": "serving.tensorParallelSize",
        "--tensor-parallel-size": "serving.tensorParallelSize", "--quantization": "quantization.method",
        "--pp-size": "serving.pipelineParallelSize", "--pipeline-parallel-size": "serving.pipelineParallelSize",
        "--nnodes": "resources.nodes", "--node-rank": "resources.nodes", "--dist-init-addr": "resources.nodes",
        "--nccl-init-addr": "resources.nodes",
    },
    field_docs={
        "model.name": "--model-path", "model.servedName": "--served-model-name", "model.revision": "--revision",
        "model.tokenSecretRef": "HF_TOKEN", "quantization.method": "--quantization <method> (no gguf)",
        "serving.maxModelLen": "--context-length",
        "serving.gpuMemoryUtilization": "--mem-fraction-static (default: sized from the GPU's memory)",
        "serving.tensorParallelSize": "--tp-size",
        "serving.pipelineParallelSize": "--pp-size",
        "serving.enablePrefixCaching": "on by default (RadixAttention); false: --disable-radix-cache",
        "serving.maxConcurrentRequests": "--max-running-requests",
    },
    # Scheduler gauges come from TP rank 0 only (one series per Pod); the token counter has one series
    # per `is_streaming` value, which the autoscaler adds up.
    metrics=EngineMetrics(
        waiting=("sglang:num_queue_reqs",),
        running=("sglang:num_running_reqs",),
        kv_cache=("sglang:token_usage",),
        prompt_tokens="sglang:prompt_tokens_total",
        first_token_seconds="sglang:time_to_first_token_seconds",
        queue_seconds="sglang:queue_time_seconds",
        # Not generation_tokens: SGLang adds a request's output tokens to sglang:generation_tokens_total when
        # it finishes (the tokenizer manager's per-finished-request metrics), so its rate over one scrape is
        # not the decode speed of the batch running now, which the KV load model needs.
    ),
    capabilities=Capabilities(
        quantization=("none", "awq", "gptq", "bitsandbytes", "fp8"),
        quantization_note="GGUF checkpoints on SGLang are not supported by the operator yet",
        settings=("gpuMemoryUtilization", "enablePrefixCaching", "pipelineParallelSize"),
        multi_node=True,
        # Unset, SGLang sizes --mem-fraction-static from the GPU: (memory - activations and CUDA graphs)
        # / memory, 0.84 on an 80 GB GPU (sglang/srt/arg_groups/memory_hook.py).
        default_memory_utilization=0.84,
    ),
)
