"""TGI (`text-generation-launcher`): the exact launcher flags for each spec field and quantization."""

from __future__ import annotations

import pytest

from llm_operator.engines import container_for, tgi
from llm_operator.plan import make_plan
from unit.factories import make_service, manifest

BASE = ["--model-id", "meta-llama/Llama-3.1-8B-Instruct", "--hostname", "0.0.0.0", "--port", "8080"]


def test_minimal_spec() -> None:
    assert tgi.args(make_service("tgi")) == [*BASE, "--num-shard", "1"]


def test_every_mapped_flag_in_order_with_extra_args_last() -> None:
    service = make_service("tgi", {
        "model": {"servedName": "llama-3.1-8b", "revision": "main"},
        "quantization": {"method": "awq"},
        "resources": {"gpus": 2},
        "serving": {
            "maxModelLen": 8192,
            "maxInputTokens": 6144,
            "maxConcurrentRequests": 128,
            "extraArgs": ["--max-batch-prefill-tokens", "8192"],
        },
    })
    assert tgi.args(service) == [
        *BASE,
        "--revision", "main",
        "--quantize", "awq",
        "--max-total-tokens", "8192",
        "--max-input-tokens", "6144",
        "--num-shard", "2",
        "--max-concurrent-requests", "128",
        "--max-batch-prefill-tokens", "8192",
    ]


def test_served_name_is_not_a_tgi_flag() -> None:
    args = tgi.args(make_service("tgi", {"model": {"servedName": "alias"}}))
    assert "--served-model-name" not in args
    assert "alias" not in args


@pytest.mark.parametrize(
    ("quantization", "expected"),
    [
        ({"method": "none"}, None),
        ({"method": "awq"}, "awq"),
        ({"method": "gptq"}, "gptq"),
        ({"method": "fp8"}, "fp8"),
        ({"method": "bitsandbytes"}, "bitsandbytes"),
        ({"method": "bitsandbytes", "bits": 8}, "bitsandbytes"),
        ({"method": "bitsandbytes", "bits": 4}, "bitsandbytes-nf4"),
    ],
    ids=lambda v: str(v),
)
def test_each_quantization_method(quantization: dict, expected: str | None) -> None:
    args = tgi.args(make_service("tgi", {"quantization": quantization}))
    if expected is None:
        assert "--quantize" not in args
    else:
        assert args[args.index("--quantize") + 1] == expected
        assert args.count("--quantize") == 1
    assert "--quantization" not in args


@pytest.mark.parametrize(
    ("method", "bits", "expected"),
    [("none", None, None), ("awq", None, "awq"), ("gptq", None, "gptq"), ("fp8", None, "fp8"),
     ("bitsandbytes", None, "bitsandbytes"), ("bitsandbytes", 8, "bitsandbytes"),
     ("bitsandbytes", 4, "bitsandbytes-nf4")],
)
def test_quantize_value(method: str, bits: int | None, expected: str | None) -> None:
    assert tgi.quantize_value(method, bits) == expected


def test_gguf_is_rejected_for_tgi() -> None:
    plan = make_plan(manifest("tgi", {"quantization": {"method": "gguf", "variant": "Q4_K_M"}}), uid=None)
    assert plan.objects == []
    assert any("spec.quantization.method" in p and "tgi" in p for p in plan.problems)


@pytest.mark.parametrize(
    "serving",
    [{"gpuMemoryUtilization": 0.9}, {"enablePrefixCaching": True}],
    ids=["gpuMemoryUtilization", "enablePrefixCaching"],
)
def test_vllm_only_settings_are_rejected_for_tgi(serving: dict) -> None:
    plan = make_plan(manifest("tgi", {"serving": serving}), uid=None)
    assert plan.objects == []
    (field,) = serving
    assert any(f"spec.serving.{field}" in p for p in plan.problems)


@pytest.mark.parametrize(("gpus", "tp", "expected"), [(0, None, "1"), (1, None, "1"), (4, None, "4"), (4, 2, "2")])
def test_num_shard_defaults_to_gpus(gpus: int, tp: int | None, expected: str) -> None:
    patch: dict = {"resources": {"gpus": gpus}}
    if tp is not None:
        patch["serving"] = {"tensorParallelSize": tp}
    args = tgi.args(make_service("tgi", patch))
    assert args[args.index("--num-shard") + 1] == expected


def test_unset_settings_keep_the_engine_defaults() -> None:
    args = tgi.args(make_service("tgi"))
    for flag in ("--revision", "--quantize", "--max-total-tokens", "--max-input-tokens", "--max-concurrent-requests"):
        assert flag not in args


def test_container_basics() -> None:
    engine = container_for(make_service("tgi"))
    assert engine.command == ["text-generation-launcher"]
    assert engine.port == 8080  # unprivileged, so the container runs as non-root
    assert tgi.SERVICE_PORT == 80
    assert engine.health_path == "/health"
    assert engine.metrics_path == "/metrics"
    assert engine.cache_mount_path == "/data"
    assert engine.shm_size_limit == "1Gi"
    assert engine.init_containers == []


@pytest.mark.parametrize("gpus", [0, 1, 4])
def test_shared_memory_always_1gi(gpus: int) -> None:
    assert container_for(make_service("tgi", {"resources": {"gpus": gpus}})).shm_size_limit == "1Gi"


def test_image_is_pinned_and_overridable() -> None:
    default = container_for(make_service("tgi")).image
    assert default.startswith("ghcr.io/huggingface/text-generation-inference:")
    assert not default.endswith(":latest")
    assert container_for(make_service("tgi", {"image": "registry.local/tgi:3"})).image == "registry.local/tgi:3"


def test_hf_cache_is_on_the_model_cache() -> None:
    env = {e["name"]: e.get("value") for e in container_for(make_service("tgi")).env}
    assert env["HF_HOME"] == "/data"
    assert env["HUGGINGFACE_HUB_CACHE"] == "/data"
