"""The fit check: weights against GPU memory, with the numbers and the smallest change that fits."""

from __future__ import annotations

import re

import pytest

from llm_operator.engines import ENGINES
from llm_operator.fit import (
    GGUF_VARIANT_BITS,
    GIB,
    GPU_MEMORY_MIB,
    FitInput,
    bits_per_parameter,
    check_fit,
    gpu_memory_bytes,
    ollama_tag_variant,
    weight_bytes,
)
from llm_operator.plan import fit_input
from unit.factories import make_service


def fit(
    parameters: float | None,
    *,
    method: str = "none",
    bits: int | None = None,
    variant: str | None = None,
    gpus: int = 1,
    memory: int | None = None,
    product: str | None = None,
    utilization: float = 0.9,
    engine: str = "vllm",
) -> FitInput:
    methods = ENGINES[engine].capabilities.quantization
    return FitInput(parameters, method, bits, variant, gpus, memory, product, utilization, methods)


def gib_numbers(message: str) -> list[float]:
    return [float(n) for n in re.findall(r"([0-9]+(?:\.[0-9]+)?) GiB", message)]


# --- the contract's headline cases ----------------------------------------------------------------


def test_70b_fp16_on_one_h100_does_not_fit() -> None:
    result = check_fit(fit(70e9, product="NVIDIA-H100-80GB-HBM3"))
    assert result.status == "False"
    assert not result.fits
    assert result.reason == "InsufficientGPUMemory"
    # the numbers: 70e9 x 2 bytes = 130.4 GiB of weights against one 79.6 GiB card
    assert "130.4 GiB" in result.message
    assert "79.6 GiB" in result.message
    assert "1 x" in result.message
    # the smallest change: more GPUs (2 x 80 GB is not enough with a KV-cache share) or a quantization
    assert re.search(r"resources\.gpus: (2|4)\b", result.message)
    assert "quantization.method:" in result.message


def test_70b_fp16_suggests_exactly_four_gpus_or_awq() -> None:
    message = check_fit(fit(70e9, product="NVIDIA-H100-80GB-HBM3")).message
    assert "resources.gpus: 4" in message
    assert "resources.gpus: 2" not in message
    assert "quantization.method: awq (4-bit) with 1 GPU(s)" in message


def test_the_suggested_gpu_count_fits() -> None:
    message = check_fit(fit(70e9, product="NVIDIA-H100-80GB-HBM3")).message
    gpus = int(re.search(r"resources\.gpus: ([0-9]+)", message)[1])  # type: ignore[index]
    assert check_fit(fit(70e9, product="NVIDIA-H100-80GB-HBM3", gpus=gpus)).fits
    assert not check_fit(fit(70e9, product="NVIDIA-H100-80GB-HBM3", gpus=gpus // 2)).fits


def test_the_suggested_quantization_fits() -> None:
    assert check_fit(fit(70e9, method="awq", product="NVIDIA-H100-80GB-HBM3")).fits


def test_70b_fp16_on_four_h100_fits() -> None:
    result = check_fit(fit(70e9, gpus=4, product="NVIDIA-H100-80GB-HBM3"))
    assert result.status == "True"
    assert result.reason == "Fits"
    assert "130.4 GiB" in result.message
    assert "4 x 79.6 GiB" in result.message


def test_8b_on_rtx_4090_fits() -> None:
    result = check_fit(fit(8e9, product="NVIDIA-GeForce-RTX-4090"))
    assert (result.status, result.reason) == ("True", "Fits")
    assert result.fits
    weights, kv_cache = gib_numbers(result.message)[:2]
    assert weights == pytest.approx(8e9 * 2 / GIB, abs=0.05)
    assert kv_cache > 0


def test_smaller_format_is_suggested_when_more_gpus_cannot_help() -> None:
    # 8 x 24 GiB cannot hold 405B fp16 (754 GiB)
    message = check_fit(fit(405e9, memory=24 * GIB)).message
    assert "no single change fits" in message


def test_fp8_suggested_when_it_is_enough() -> None:
    message = check_fit(fit(70e9, gpus=2, product="NVIDIA-H100-80GB-HBM3")).message
    assert "quantization.method: fp8 with 2 GPU(s)" in message


# --- bytes per parameter ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "bits", "variant", "expected"),
    [
        ("none", None, None, 16.0),
        ("fp8", None, None, 8.0),
        ("awq", None, None, 4.0),
        ("gptq", None, None, 4.0),
        ("bitsandbytes", 4, None, 4.0),
        ("bitsandbytes", 8, None, 8.0),
        ("bitsandbytes", None, None, 8.0),  # the API's default is 8-bit (TGI --quantize bitsandbytes)
        ("gguf", None, "Q4_K_M", GGUF_VARIANT_BITS["Q4_K_M"]),
        ("gguf", None, "q8_0", GGUF_VARIANT_BITS["Q8_0"]),
        ("gguf", None, "F16", 16.0),
        ("gguf", 4, None, 4.0),
        ("gguf", None, None, GGUF_VARIANT_BITS["Q4_K_M"]),
        ("gguf", 5, "UNKNOWN_TYPE", 5.0),
    ],
)
def test_bits_per_parameter(method: str, bits: int | None, variant: str | None, expected: float) -> None:
    assert bits_per_parameter(method, bits, variant) == pytest.approx(expected)


def test_quantization_shrinks_weights() -> None:
    fp16 = weight_bytes(70e9, "none", None, None)
    assert fp16 == pytest.approx(140e9)
    assert weight_bytes(70e9, "fp8", None, None) == pytest.approx(fp16 / 2)
    assert weight_bytes(70e9, "awq", None, None) == pytest.approx(fp16 / 4)
    assert weight_bytes(70e9, "gptq", None, None) == pytest.approx(fp16 / 4)
    assert weight_bytes(70e9, "bitsandbytes", 4, None) == pytest.approx(fp16 / 4)


def test_awq_message_reports_a_quarter_of_the_fp16_weights() -> None:
    fp16 = gib_numbers(check_fit(fit(70e9, gpus=4, memory=80 * GIB)).message)[0]
    awq = gib_numbers(check_fit(fit(70e9, method="awq", memory=80 * GIB)).message)[0]
    assert awq == pytest.approx(fp16 / 4, abs=0.1)


@pytest.mark.parametrize(("variant", "expected_gib"), [("Q4_K_M", 7.6e9 * 4.85 / 8 / GIB),
                                                       ("Q8_0", 7.6e9 * 8.5 / 8 / GIB)])
def test_gguf_variant_bits_are_used(variant: str, expected_gib: float) -> None:
    result = check_fit(fit(7.6e9, method="gguf", variant=variant, memory=24 * GIB))
    assert gib_numbers(result.message)[0] == pytest.approx(expected_gib, abs=0.05)


def test_gguf_variant_decides_the_fit() -> None:
    # 13B on a 12 GiB card (9.7 GiB usable): Q4_K_M is 7.3 GiB, Q8_0 is 12.9 GiB
    assert check_fit(fit(13e9, method="gguf", variant="Q4_K_M", memory=12 * GIB)).fits
    assert not check_fit(fit(13e9, method="gguf", variant="Q8_0", memory=12 * GIB)).fits


# --- unknown and CPU ---------------------------------------------------------------------------------


def test_unknown_gpu_is_not_checked() -> None:
    result = check_fit(fit(70e9, product="Some-Future-GPU"))
    assert (result.status, result.reason) == ("Unknown", "NotChecked")
    assert result.fits  # an unchecked spec is deployed
    assert "gpuMemory" in result.message


def test_no_parameters_is_not_checked() -> None:
    result = check_fit(fit(None, product="NVIDIA-H100-80GB-HBM3"))
    assert (result.status, result.reason) == ("Unknown", "NotChecked")
    assert result.fits
    assert "spec.model.parameters" in result.message


def test_no_gpu_size_at_all_is_not_checked() -> None:
    assert check_fit(fit(8e9)).reason == "NotChecked"


def test_cpu_only() -> None:
    result = check_fit(fit(70e9, gpus=0, memory=None))
    assert (result.status, result.reason) == ("True", "CPUOnly")
    assert result.fits


def test_explicit_gpu_memory_overrides_the_product_table() -> None:
    assert gpu_memory_bytes(48 * GIB, "NVIDIA-H100-80GB-HBM3") == 48 * GIB
    assert gpu_memory_bytes(None, "NVIDIA-H100-80GB-HBM3") == GPU_MEMORY_MIB["NVIDIA-H100-80GB-HBM3"] * 2**20
    assert gpu_memory_bytes(None, "unknown") is None
    assert not check_fit(fit(30e9, memory=48 * GIB, product="NVIDIA-H100-80GB-HBM3")).fits
    assert check_fit(fit(30e9, product="NVIDIA-H100-80GB-HBM3")).fits


@pytest.mark.parametrize(
    ("product", "gib"),
    [("NVIDIA-H100-80GB-HBM3", 80), ("NVIDIA-A100-SXM4-80GB", 80), ("NVIDIA-A100-SXM4-40GB", 40),
     ("NVIDIA-L40S", 45), ("NVIDIA-L4", 22.5), ("NVIDIA-GeForce-RTX-4090", 24), ("Tesla-T4", 15),
     ("NVIDIA-H200", 140), ("AMD-Instinct-MI300X", 192)],
)
def test_gpu_table_sizes_are_plausible(product: str, gib: float) -> None:
    assert GPU_MEMORY_MIB[product] * 2**20 / GIB == pytest.approx(gib, rel=0.02)


def test_lower_utilization_can_break_the_fit() -> None:
    assert check_fit(fit(8e9, product="NVIDIA-GeForce-RTX-4090", utilization=0.9)).fits
    assert not check_fit(fit(8e9, product="NVIDIA-GeForce-RTX-4090", utilization=0.6)).fits


# --- engine-aware suggestions and the spec -> input mapping ---------------------------------------------


@pytest.mark.parametrize("parameters", [70e9, 120e9, 180e9, 405e9])
@pytest.mark.parametrize("method", ["none", "fp8"])
def test_tgi_is_not_told_to_use_gguf(parameters: float, method: str) -> None:
    message = check_fit(fit(parameters, method=method, gpus=1, memory=80 * GIB, engine="tgi")).message
    assert "gguf" not in message


def test_ollama_is_only_told_about_gguf() -> None:
    result = check_fit(fit(70e9, method="gguf", variant="Q8_0", memory=48 * GIB, engine="ollama"))
    assert not result.fits
    assert "fp8" not in result.message
    assert "awq" not in result.message


def test_fit_input_from_a_spec() -> None:
    service = make_service("vllm", {
        "model": {"parameters": "70B"},
        "quantization": {"method": "awq"},
        "resources": {"gpus": 2, "gpuMemory": "80Gi", "gpuProduct": "NVIDIA-H100-80GB-HBM3"},
        "serving": {"gpuMemoryUtilization": 0.85},
    })
    assert fit_input(service.spec) == FitInput(70e9, "awq", None, None, 2, 80 * GIB, "NVIDIA-H100-80GB-HBM3", 0.85,
                                               ENGINES["vllm"].capabilities.quantization, nodes=1, pod_gpus=2,
                                               multi_node=True)


# --- layouts across nodes -------------------------------------------------------------------------

H100 = "NVIDIA-H100-80GB-HBM3"


def test_maverick_in_bf16_is_offered_two_nodes_of_eight() -> None:
    """Llama 4 Maverick, about 402B parameters: 749 GiB of bf16 weights, more than one node of 8x H100."""
    spec = make_service("vllm", {"model": {"parameters": "402B"}, "resources": {"gpus": 8, "gpuProduct": H100}}).spec
    result = check_fit(fit_input(spec))
    assert not result.fits
    assert "fits on 2 nodes of 8x NVIDIA-H100-80GB-HBM3 with tensorParallelSize 8 and pipelineParallelSize 2" \
        in result.message
    assert "resources.gpus: 8 and resources.nodes: 2" in result.message


def test_the_offered_layout_fits() -> None:
    spec = make_service("vllm", {"model": {"parameters": "402B"},
                                 "resources": {"gpus": 8, "nodes": 2, "gpuProduct": H100}}).spec
    result = check_fit(fit_input(spec))
    assert result.fits, result.message
    assert "16 x 79.6 GiB x 0.9 on 2 nodes" in result.message


def test_a_layout_too_small_across_nodes_is_refused_with_more_nodes() -> None:
    """DeepSeek-V3's 671B in bf16 (1250 GiB) needs three nodes of 8x H100, not two."""
    spec = make_service("vllm", {"model": {"parameters": "671B"},
                                 "resources": {"gpus": 8, "nodes": 2, "gpuProduct": H100}}).spec
    result = check_fit(fit_input(spec))
    assert not result.fits
    assert "on 2 nodes" in result.message
    assert "resources.nodes: 3" in result.message
    assert "quantization.method: fp8 with 16 GPU(s) on 2 nodes" in result.message


def test_tensor_parallel_across_nodes_counts_every_gpu() -> None:
    spec = make_service("vllm", {"model": {"parameters": "402B"},
                                 "resources": {"gpus": 8, "nodes": 2, "gpuProduct": H100},
                                 "serving": {"tensorParallelSize": 16}}).spec
    assert fit_input(spec).gpus == 16


def test_more_gpus_in_one_pod_than_a_node_has_is_refused() -> None:
    spec = make_service("vllm", {"model": {"parameters": "402B"}, "resources": {"gpus": 16, "gpuProduct": H100},
                                 "serving": {"tensorParallelSize": 16}}).spec
    result = check_fit(fit_input(spec))
    assert (result.status, result.reason) == ("False", "TooManyGPUsPerNode")
    assert "resources.gpus (16)" in result.message
    assert "than a NVIDIA-H100-80GB-HBM3 node has (8): set resources.gpus: 8 and resources.nodes: 2" in result.message


def test_an_engine_on_one_node_is_not_offered_nodes() -> None:
    spec = make_service("tgi", {"model": {"parameters": "402B"}, "resources": {"gpus": 8, "gpuProduct": H100}}).spec
    result = check_fit(fit_input(spec))
    assert not result.fits
    assert "resources.nodes" not in result.message
    assert "quantization.method" in result.message or "no single change fits" in result.message


def test_more_gpus_are_offered_only_up_to_a_node() -> None:
    """405B in fp8 (377 GiB) fits 8x H100 on one node: the suggestion stays on one node."""
    spec = make_service("vllm", {"model": {"parameters": "405B"}, "quantization": {"method": "fp8"},
                                 "resources": {"gpus": 4, "gpuProduct": H100}}).spec
    result = check_fit(fit_input(spec))
    assert "resources.gpus: 8 (tensor parallel across 8 GPUs)" in result.message
    assert "resources.nodes" not in result.message


@pytest.mark.parametrize("engine", ["vllm", "tgi", "ollama"])
def test_fit_input_default_utilization(engine: str) -> None:
    assert fit_input(make_service(engine).spec).memory_utilization == pytest.approx(0.9)


def test_fit_input_decimal_gpu_memory() -> None:
    assert fit_input(make_service("vllm", {"resources": {"gpuMemory": "80G"}}).spec).gpu_memory_bytes == 80 * 10**9


@pytest.mark.parametrize(
    ("tag", "variant"),
    [("qwen2.5:7b-instruct-q4_K_M", "Q4_K_M"), ("llama3.1:70b-instruct-fp16", "F16"), ("llama3.1:70b", None),
     ("llama3.1", None), ("hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q8_0", "Q8_0"),
     ("registry.local:5000/library/qwen", None), ("qwen2.5:7b-q5_k_s", "Q5_K_S")],
)
def test_ollama_tag_variant(tag: str, variant: str | None) -> None:
    assert ollama_tag_variant(tag) == variant


def test_ollama_none_means_the_tags_own_quantization_not_16_bit() -> None:
    """`ollama pull llama3.1:70b` is a ~40 GB Q4_K_M file: it fits one 80 GB GPU."""
    service = make_service("ollama", {"model": {"name": "llama3.1:70b", "parameters": "70B"},
                                      "resources": {"gpus": 1, "gpuMemory": "80Gi"}})
    spec = fit_input(service.spec)
    assert spec.method == "gguf"
    assert check_fit(spec).fits
    fp16 = make_service("ollama", {"model": {"name": "llama3.1:70b-instruct-fp16", "parameters": "70B"},
                                   "resources": {"gpus": 1, "gpuMemory": "80Gi"}})
    assert not check_fit(fit_input(fp16.spec)).fits


def test_ollama_explicit_variant_wins_over_the_tag() -> None:
    service = make_service("ollama", {"model": {"name": "qwen2.5:7b-instruct-q4_K_M", "parameters": "7.6B"},
                                      "quantization": {"method": "gguf", "variant": "Q8_0"}})
    assert fit_input(service.spec).variant == "Q8_0"


def test_vllm_none_stays_16_bit() -> None:
    spec = fit_input(make_service("vllm", {"model": {"parameters": "8B"}}).spec)
    assert (spec.method, spec.variant) == ("none", None)
