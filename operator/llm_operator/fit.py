"""The fit check: will the model's weights fit the GPUs the spec asks for?

Weights take `parameters x bytes per parameter` (fp16/bf16 2, fp8/int8 1, 4-bit 0.5, a GGUF
variant its own bits). They must fit in `gpus x gpu memory x memory utilization` with a share
left for the KV cache and activations; otherwise the engine dies with out-of-memory after it
has held the GPUs for minutes of download. The check is pure: the handler reports its result
as the ModelFits condition and does not deploy a spec that cannot fit.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 2**30
MIB = 2**20

# Usable memory of each GPU as the NVIDIA GPU operator labels it (`nvidia.com/gpu.memory`, MiB;
# the product names are its `nvidia.com/gpu.product` labels), from the vendors' data sheets.
GPU_MEMORY_MIB: dict[str, int] = {
    "NVIDIA-B200": 183359,
    "NVIDIA-H200": 143771,
    "NVIDIA-H200-NVL": 143771,
    "NVIDIA-GH200-480GB": 97871,
    "NVIDIA-H100-NVL": 95830,
    "NVIDIA-H100-80GB-HBM3": 81559,
    "NVIDIA-H100-PCIe": 81559,
    "NVIDIA-H800": 81559,
    "NVIDIA-A100-SXM4-80GB": 81920,
    "NVIDIA-A100-80GB-PCIe": 81920,
    "NVIDIA-A100-SXM4-40GB": 40960,
    "NVIDIA-A100-PCIE-40GB": 40960,
    "NVIDIA-L40S": 46068,
    "NVIDIA-L40": 46068,
    "NVIDIA-RTX-6000-Ada-Generation": 49140,
    "NVIDIA-RTX-A6000": 49140,
    "NVIDIA-A40": 46068,
    "NVIDIA-L4": 23034,
    "NVIDIA-A10G": 23028,
    "NVIDIA-A10": 23028,
    "Tesla-T4": 15360,
    "Tesla-V100-SXM2-16GB": 16384,
    "Tesla-V100-SXM2-32GB": 32768,
    "NVIDIA-GeForce-RTX-5090": 32607,
    "NVIDIA-GeForce-RTX-4090": 24564,
    "NVIDIA-GeForce-RTX-3090": 24576,
    "NVIDIA-GeForce-RTX-4080": 16376,
    "AMD-Instinct-MI300X": 196608,
    "AMD-Instinct-MI250X": 131072,
}

# The most GPUs one node of a product holds (HGX/DGX and PCIe servers: 8; a GH200 node: up to 4
# superchips), for layouts that would need more in one Pod. Products not listed: 8.
GPUS_PER_NODE: dict[str, int] = {"NVIDIA-GH200-480GB": 4}
DEFAULT_GPUS_PER_NODE = 8
MAX_NODES = 16

# Bits per weight of llama.cpp's GGUF quantization types (llama.cpp's quantize tool reports
# these effective sizes, scales included).
GGUF_VARIANT_BITS: dict[str, float] = {
    "Q2_K": 3.35, "Q3_K_S": 3.5, "Q3_K_M": 3.91, "Q3_K_L": 4.27,
    "Q4_0": 4.55, "Q4_1": 5.0, "Q4_K_S": 4.58, "Q4_K_M": 4.85,
    "Q5_0": 5.54, "Q5_1": 6.0, "Q5_K_S": 5.54, "Q5_K_M": 5.69,
    "Q6_K": 6.56, "Q8_0": 8.5, "F16": 16.0, "BF16": 16.0, "F32": 32.0,
}
DEFAULT_GGUF_BITS = 4.85  # Ollama's default tags are Q4_K_M

# What is left of the budget after the weights must hold the KV cache and activations; below
# this share the engine either fails to start (vLLM: "No available memory for the cache
# blocks") or serves a context too short to be useful.
KV_CACHE_MIN_SHARE = 0.10
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)


@dataclass(frozen=True)
class FitInput:
    parameters: float | None
    method: str  # none | awq | gptq | bitsandbytes | fp8 | gguf
    bits: int | None
    variant: str | None
    gpus: int
    gpu_memory_bytes: int | None
    gpu_product: str | None
    memory_utilization: float
    methods: tuple[str, ...] = ("none", "awq", "gptq", "bitsandbytes", "fp8", "gguf")
    """The quantization methods the engine accepts: suggestions name only these."""
    nodes: int = 1
    """Nodes one replica spans; `gpus` counts the GPUs of all of them that hold weights."""
    pod_gpus: int | None = None
    """GPUs of each Pod (resources.gpus), checked against what one node of the product holds."""
    multi_node: bool = False
    """Whether the engine serves across nodes: suggestions offer more nodes only then."""


@dataclass(frozen=True)
class FitResult:
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str

    @property
    def fits(self) -> bool:
        return self.status != "False"


def bits_per_parameter(method: str, bits: int | None, variant: str | None) -> float:
    if method == "gguf":
        if variant:
            return GGUF_VARIANT_BITS.get(variant.upper(), float(bits or DEFAULT_GGUF_BITS))
        return float(bits) if bits else DEFAULT_GGUF_BITS
    if method in ("awq", "gptq"):
        return float(bits or 4)
    if method == "bitsandbytes":
        return float(bits or 8)  # the API's default: int8 (TGI --quantize bitsandbytes)
    if method == "fp8":
        return 8.0
    return 16.0


def ollama_tag_variant(tag: str) -> str | None:
    """The GGUF type an Ollama tag names (`qwen2.5:7b-instruct-q4_K_M` -> Q4_K_M, `...-fp16` -> F16),
    or None when the tag does not say (Ollama's default tags are Q4_K_M)."""
    last = tag.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    for part in reversed(last.split(":", 1)[1].split("-")):
        name = {"FP16": "F16", "FP32": "F32"}.get(part.upper(), part.upper())
        if name in GGUF_VARIANT_BITS:
            return name
    return None


def gpu_memory_bytes(explicit: int | None, product: str | None) -> int | None:
    if explicit:
        return explicit
    if product and product in GPU_MEMORY_MIB:
        return GPU_MEMORY_MIB[product] * MIB
    return None


def weight_bytes(parameters: float, method: str, bits: int | None, variant: str | None) -> float:
    return parameters * bits_per_parameter(method, bits, variant) / 8


def _usable(gpus: int, per_gpu: int, utilization: float) -> float:
    return gpus * per_gpu * utilization * (1 - KV_CACHE_MIN_SHARE)


def _gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"


def gpus_per_node(product: str | None) -> int | None:
    """The most GPUs one node of `product` has, when the product is known."""
    if product and product in GPU_MEMORY_MIB:
        return GPUS_PER_NODE.get(product, DEFAULT_GPUS_PER_NODE)
    return None


def _per_node_check(spec: FitInput) -> FitResult | None:
    """A Pod asking for more GPUs than any node of the selected product has would stay Pending forever."""
    most = gpus_per_node(spec.gpu_product)
    if most is None or spec.pod_gpus is None or spec.pod_gpus <= most:
        return None
    total = spec.pod_gpus * spec.nodes
    fix = (f"set resources.gpus: {most} and resources.nodes: {-(-total // most)}" if spec.multi_node
           else f"set resources.gpus to at most {most}")
    return FitResult(
        "False", "TooManyGPUsPerNode",
        f"resources.gpus ({spec.pod_gpus}) asks for more GPUs in one Pod than a {spec.gpu_product} node has "
        f"({most}): {fix}",
    )


def _layout(spec: FitInput, per_gpu: int) -> str:
    gpus = f"{spec.gpus} x {_gib(per_gpu)} x {spec.memory_utilization:g}"
    return f"{gpus} on {spec.nodes} nodes" if spec.nodes > 1 else gpus


def check_fit(spec: FitInput) -> FitResult:
    if spec.gpus == 0:
        return FitResult("True", "CPUOnly", "no GPUs requested; weights load into node memory")
    too_many = _per_node_check(spec)
    if too_many is not None:
        return too_many
    per_gpu = gpu_memory_bytes(spec.gpu_memory_bytes, spec.gpu_product)
    if spec.parameters is None or per_gpu is None:
        missing = "spec.model.parameters" if spec.parameters is None else (
            "spec.resources.gpuMemory (or a known spec.resources.gpuProduct)"
        )
        return FitResult("Unknown", "NotChecked", f"fit not checked: set {missing} to enable it")
    weights = weight_bytes(spec.parameters, spec.method, spec.bits, spec.variant)
    budget = spec.gpus * per_gpu * spec.memory_utilization
    usable = _usable(spec.gpus, per_gpu, spec.memory_utilization)
    layout = _layout(spec, per_gpu)
    if weights <= usable:
        return FitResult(
            "True", "Fits",
            f"weights {_gib(weights)} + KV cache {_gib(budget - weights)} fit {layout}",
        )
    return FitResult(
        "False", "InsufficientGPUMemory",
        f"weights {_gib(weights)} need more than {_gib(usable)} usable of {layout} "
        f"(keeping {KV_CACHE_MIN_SHARE:.0%} for the KV cache); {suggest(spec, per_gpu)}",
    )


def suggest(spec: FitInput, per_gpu: int) -> str:
    """The smallest changes that would fit: more GPUs first, then a smaller weight format."""
    assert spec.parameters is not None
    options: list[str] = []
    weights = weight_bytes(spec.parameters, spec.method, spec.bits, spec.variant)
    node_gpus = gpus_per_node(spec.gpu_product) or DEFAULT_GPUS_PER_NODE
    more_gpus = next(
        (n for n in TENSOR_PARALLEL_SIZES
         if spec.gpus < n <= node_gpus and spec.nodes == 1 and weights <= _usable(n, per_gpu, spec.memory_utilization)),
        None,
    )
    if more_gpus:
        options.append(f"resources.gpus: {more_gpus} (tensor parallel across {more_gpus} GPUs)")
    elif spec.multi_node:
        nodes = next((k for k in range(max(2, spec.nodes + 1), MAX_NODES + 1)
                      if weights <= _usable(node_gpus * k, per_gpu, spec.memory_utilization)), None)
        if nodes:
            options.append(multi_node_layout(spec, node_gpus, nodes, per_gpu))
    for method, bits, label in (("fp8", None, "fp8"), ("awq", 4, "awq (4-bit)"), ("gguf", None, "gguf Q4_K_M")):
        if bits_per_parameter(method, bits, None) >= bits_per_parameter(spec.method, spec.bits, spec.variant):
            continue
        if method not in spec.methods:
            continue  # the API rejects this method for the engine
        if weight_bytes(spec.parameters, method, bits, None) <= _usable(spec.gpus, per_gpu, spec.memory_utilization):
            where = f" on {spec.nodes} nodes" if spec.nodes > 1 else ""
            options.append(f"quantization.method: {label} with {spec.gpus} GPU(s){where}")
            break
    if not options:
        return "no single change fits: use a larger GPU, or more GPUs with a quantized model"
    return "would fit with " + " or ".join(options)


def multi_node_layout(spec: FitInput, node_gpus: int, nodes: int, per_gpu: int) -> str:
    """'resources.gpus: 8 and resources.nodes: 2 (fits on 2 nodes of 8x NVIDIA-H100-80GB-HBM3 with
    tensorParallelSize 8 and pipelineParallelSize 2)': tensor parallel within a node, a stage per node."""
    gpu = spec.gpu_product or f"{_gib(per_gpu)} GPU"
    return (f"resources.gpus: {node_gpus} and resources.nodes: {nodes} (fits on {nodes} nodes of {node_gpus}x {gpu} "
            f"with tensorParallelSize {node_gpus} and pipelineParallelSize {nodes})")
