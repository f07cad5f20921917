"""SGLang (`python3 -m sglang.launch_server`): the exact command line for each spec field, and what the
rest of the operator reads from its descriptor (router model name, metrics, capabilities)."""

from __future__ import annotations

import pytest

from llm_operator.api.validation import validate_documents
from llm_operator.autoscale.config import policy_config
from llm_operator.engines import container_for, engine_problems, sglang
from llm_operator.plan import fit_input
from llm_operator.resources.deployment import build_deployment
from llm_operator.router.config import litellm_config
from unit.factories import make_service, manifest

BASE_ARGS = [
    "--model-path", "meta-llama/Llama-3.1-8B-Instruct",
    "--served-model-name", "llm",
    "--host", "0.0.0.0",
    "--port", "30000",
]


def test_minimal_spec_serves_on_all_interfaces_with_metrics_on() -> None:
    assert sglang.args(make_service("sglang")) == [*BASE_ARGS, "--tp-size", "1", "--enable-metrics"]


def test_every_mapped_flag_in_order_with_extra_args_last() -> None:
    service = make_service("sglang", {
        "model": {"servedName": "llama-3.1-8b", "revision": "0e9e39f"},
        "quantization": {"method": "fp8"},
        "resources": {"gpus": 4},
        "serving": {
            "maxModelLen": 32768,
            "gpuMemoryUtilization": 0.8,
            "maxConcurrentRequests": 64,
            "enablePrefixCaching": False,
            "tensorParallelSize": 2,
            "extraArgs": ["--chunked-prefill-size", "4096"],
        },
    })
    assert sglang.args(service) == [
        "--model-path", "meta-llama/Llama-3.1-8B-Instruct",
        "--served-model-name", "llama-3.1-8b",
        "--host", "0.0.0.0",
        "--port", "30000",
        "--tp-size", "2",
        "--enable-metrics",
        "--revision", "0e9e39f",
        "--quantization", "fp8",
        "--context-length", "32768",
        "--mem-fraction-static", "0.8",
        "--max-running-requests", "64",
        "--disable-radix-cache",
        "--chunked-prefill-size", "4096",
    ]


def test_prefix_caching_true_is_the_default_and_adds_nothing() -> None:
    args = sglang.args(make_service("sglang", {"serving": {"enablePrefixCaching": True}}))
    assert "--disable-radix-cache" not in args


@pytest.mark.parametrize("method", ["awq", "gptq", "bitsandbytes", "fp8"])
def test_quantization_method_is_passed_as_is(method: str) -> None:
    args = sglang.args(make_service("sglang", {"quantization": {"method": method}}))
    assert args[args.index("--quantization") + 1] == method


def test_container_sets_the_command_the_image_lacks_and_keeps_caches_on_the_volume() -> None:
    engine = container_for(make_service("sglang", {"model": {"tokenSecretRef": {"name": "hf", "key": "token"}}}))
    assert engine.command == ["python3", "-m", "sglang.launch_server"]
    assert engine.image == sglang.IMAGE == "lmsysorg/sglang:v0.5.23"
    assert (engine.port, engine.health_path, engine.metrics_path) == (30000, "/health", "/metrics")
    env = {e["name"]: e for e in engine.env}
    assert env["HF_HOME"]["value"].startswith(engine.cache_mount_path)
    assert env["HOME"]["value"].startswith(engine.cache_mount_path)
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}


@pytest.mark.parametrize(("gpus", "shm"), [(0, "1Gi"), (1, "1Gi"), (2, ""), (8, "")])
def test_shared_memory_grows_unbounded_for_tensor_parallel(gpus: int, shm: str) -> None:
    assert container_for(make_service("sglang", {"resources": {"gpus": gpus}})).shm_size_limit == shm


def test_deployment_probes_and_scrape_annotations_use_the_engine_port() -> None:
    deployment = build_deployment(make_service("sglang"), uid=None)
    template = deployment["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert container["ports"][0]["containerPort"] == 30000
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert template["metadata"]["annotations"]["prometheus.io/port"] == "30000"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]


@pytest.mark.parametrize("flag", ["--model-path", "--model", "--port", "--tp-size", "--tensor-parallel-size",
                                  "--served-model-name", "--quantization=awq"])
def test_managed_flags_in_extra_args_are_refused(flag: str) -> None:
    (problem,) = engine_problems(make_service("sglang", {"serving": {"extraArgs": [flag, "x"]}}))
    assert f"{flag.split('=')[0]} is managed by the operator for sglang" in problem


def test_router_sends_the_served_name() -> None:
    config = litellm_config(make_service("sglang", {"model": {"servedName": "chat"}}), {})
    assert config["model_list"][0]["litellm_params"]["model"] == "openai/chat"


def test_autoscaling_reads_queue_kv_cache_and_prompt_tokens() -> None:
    spec = make_service("sglang", {"autoscaling": {"enabled": True, "targetPromptTokensPerSecond": 20000}}).spec
    config = policy_config(spec)
    assert config.target_kv_cache_usage == 0.8
    assert config.prompt_tokens_per_s_per_replica == 20000.0
    assert sglang.ENGINE.metrics.waiting == ("sglang:num_queue_reqs",)
    assert sglang.ENGINE.metrics.kv_cache == ("sglang:token_usage",)


def test_fit_check_assumes_sglangs_own_memory_fraction() -> None:
    assert fit_input(make_service("sglang").spec).memory_utilization == 0.84
    assert fit_input(make_service("sglang", {"serving": {"gpuMemoryUtilization": 0.7}}).spec).memory_utilization == 0.7


@pytest.mark.parametrize(("patch", "field", "words"), [
    ({"quantization": {"method": "gguf"}}, "spec.quantization.method", "an engine that loads gguf: vllm or ollama"),
    ({"serving": {"maxModelLen": 8192, "maxInputTokens": 4096}}, "spec.serving.maxInputTokens",
     "not supported by engine sglang"),
])
def test_what_sglang_cannot_take_is_refused_by_name(patch: dict, field: str, words: str) -> None:
    (problem,) = validate_documents([manifest("sglang", patch)])
    assert problem.field == field and words in problem.message
