"""vLLM (`vllm serve`): the exact command line for each spec field and quantization."""

from __future__ import annotations

import pytest

from llm_operator.engines import container_for, vllm
from unit.factories import make_service

BASE_ARGS = [
    "meta-llama/Llama-3.1-8B-Instruct",
    "--served-model-name", "llm",
    "--host", "0.0.0.0",
    "--port", "8000",
]


def test_minimal_spec_gives_model_positional_served_name_and_tensor_parallel_from_gpus() -> None:
    assert vllm.args(make_service("vllm")) == [*BASE_ARGS, "--tensor-parallel-size", "1"]


def test_every_mapped_flag_in_order_with_extra_args_last() -> None:
    service = make_service("vllm", {
        "model": {"servedName": "llama-3.1-8b", "revision": "0e9e39f"},
        "quantization": {"method": "fp8"},
        "resources": {"gpus": 2},
        "serving": {
            "maxModelLen": 32768,
            "gpuMemoryUtilization": 0.88,
            "enablePrefixCaching": True,
            "maxConcurrentRequests": 128,
            "extraArgs": ["--enforce-eager", "--swap-space", "8"],
        },
    })
    assert vllm.args(service) == [
        "meta-llama/Llama-3.1-8B-Instruct",
        "--served-model-name", "llama-3.1-8b",
        "--host", "0.0.0.0",
        "--port", "8000",
        "--revision", "0e9e39f",
        "--quantization", "fp8",
        "--max-model-len", "32768",
        "--gpu-memory-utilization", "0.88",
        "--tensor-parallel-size", "2",
        "--max-num-seqs", "128",
        "--enable-prefix-caching",
        "--enforce-eager", "--swap-space", "8",
    ]


@pytest.mark.parametrize(
    ("quantization", "expected"),
    [
        ({"method": "none"}, None),
        ({"method": "awq"}, "awq"),
        ({"method": "gptq"}, "gptq"),
        ({"method": "fp8"}, "fp8"),
        ({"method": "bitsandbytes"}, "bitsandbytes"),
        ({"method": "bitsandbytes", "bits": 4}, "bitsandbytes"),
        ({"method": "bitsandbytes", "bits": 8}, "bitsandbytes"),
        ({"method": "gguf", "variant": "Q4_K_M"}, "gguf"),
        ({"method": "gguf", "bits": 4}, "gguf"),
    ],
    ids=lambda v: str(v),
)
def test_each_quantization_method(quantization: dict, expected: str | None) -> None:
    args = vllm.args(make_service("vllm", {"quantization": quantization}))
    # exactly one flag for the method; bits and variant are properties of the checkpoint, not flags
    quantization_flag = [] if expected is None else ["--quantization", expected]
    assert args == [*BASE_ARGS, *quantization_flag, "--tensor-parallel-size", "1"]


def test_gguf_model_file_is_the_model_argument() -> None:
    service = make_service("vllm", {
        "model": {"name": "/model-cache/qwen2.5-7b-instruct-q4_k_m.gguf"},
        "quantization": {"method": "gguf", "variant": "Q4_K_M"},
    })
    args = vllm.args(service)
    assert args[0] == "/model-cache/qwen2.5-7b-instruct-q4_k_m.gguf"
    assert args[args.index("--quantization") + 1] == "gguf"


@pytest.mark.parametrize(("gpus", "tp", "expected"), [(0, None, "1"), (1, None, "1"), (4, None, "4"), (8, None, "8"),
                                                      (4, 2, "2"), (0, 2, "2")])
def test_tensor_parallel_size_defaults_to_gpus(gpus: int, tp: int | None, expected: str) -> None:
    patch: dict = {"resources": {"gpus": gpus}}
    if tp is not None:
        patch["serving"] = {"tensorParallelSize": tp}
    args = vllm.args(make_service("vllm", patch))
    assert args[args.index("--tensor-parallel-size") + 1] == expected


@pytest.mark.parametrize(
    ("value", "present", "absent"),
    [
        (True, "--enable-prefix-caching", "--no-enable-prefix-caching"),
        (False, "--no-enable-prefix-caching", "--enable-prefix-caching"),
    ],
)
def test_prefix_caching_flag(value: bool, present: str, absent: str) -> None:
    args = vllm.args(make_service("vllm", {"serving": {"enablePrefixCaching": value}}))
    assert present in args
    assert absent not in args


def test_unset_settings_keep_the_engine_defaults() -> None:
    args = vllm.args(make_service("vllm"))
    for flag in ("--revision", "--quantization", "--max-model-len", "--gpu-memory-utilization", "--max-num-seqs",
                 "--enable-prefix-caching", "--no-enable-prefix-caching"):
        assert flag not in args


def test_empty_revision_is_not_passed() -> None:
    assert "--revision" not in vllm.args(make_service("vllm", {"model": {"revision": ""}}))


def test_served_name_defaults_to_metadata_name() -> None:
    args = vllm.args(make_service("vllm", name="chat"))
    assert args[args.index("--served-model-name") + 1] == "chat"


def test_extra_args_are_appended_verbatim_and_last() -> None:
    extra = ["--max-num-batched-tokens=8192", "--kv-cache-dtype", "fp8"]
    args = vllm.args(make_service("vllm", {"serving": {"maxModelLen": 4096, "extraArgs": extra}}))
    assert args[-3:] == extra


def test_container_basics() -> None:
    engine = container_for(make_service("vllm"))
    assert engine.command == ["vllm", "serve"]
    assert engine.port == 8000
    assert engine.health_path == "/health"
    assert engine.metrics_path == "/metrics"
    assert engine.cache_mount_path == "/model-cache"
    assert engine.init_containers == []


def test_image_is_pinned_and_overridable() -> None:
    default = container_for(make_service("vllm")).image
    assert default.startswith("vllm/vllm-openai:v")
    assert not default.endswith(":latest")
    override = container_for(make_service("vllm", {"image": "rocm/vllm:rocm6.3_vllm0.8"})).image
    assert override == "rocm/vllm:rocm6.3_vllm0.8"


def test_empty_image_means_the_default() -> None:
    assert container_for(make_service("vllm", {"image": ""})).image == vllm.IMAGE


def test_caches_live_on_the_model_cache() -> None:
    env = {e["name"]: e.get("value") for e in container_for(make_service("vllm")).env}
    assert env["HF_HOME"].startswith("/model-cache/")
    assert env["VLLM_CACHE_ROOT"].startswith("/model-cache/")


@pytest.mark.parametrize(("gpus", "shm"), [(0, "1Gi"), (1, "1Gi"), (2, ""), (8, "")])
def test_shared_memory_always_unbounded_with_tensor_parallel_gpus(gpus: int, shm: str) -> None:
    assert container_for(make_service("vllm", {"resources": {"gpus": gpus}})).shm_size_limit == shm
