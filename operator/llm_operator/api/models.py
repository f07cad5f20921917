"""LLMService v1alpha1: the pydantic models are the single source of truth of the API.

Descriptions, defaults, enums and bounds here become the CRD schema (`crd.py`), and each
model's `rules` become its CEL `x-kubernetes-validations` and the offline checks
(`validation.py`). Field names follow the contract in camelCase through aliases; Python code
uses the snake_case attribute names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

from llm_operator import GROUP, KIND, VERSION
from llm_operator.api.engine_rules import NODES, TENSOR_PARALLEL_SIZE, engine_rules
from llm_operator.api.quantity import PARAMETER_COUNT_PATTERN, Quantity, parse_parameter_count
from llm_operator.api.rules import Rule, Value
from llm_operator.engines import ENGINES
from llm_operator.engines import Engine as EngineDescriptor

# The API's derived values, re-exported (they live with the engines, which must not import the API).
from llm_operator.engines.base import effective_tensor_parallel_size as effective_tensor_parallel_size
from llm_operator.engines.base import served_name as served_name

# Every name in the engine registry (a unit test keeps them equal).
Engine = Literal["vllm", "tgi", "ollama", "sglang"]
QuantizationMethod = Literal["none", "awq", "gptq", "bitsandbytes", "fp8", "gguf"]
RoutingStrategy = Literal["simple-shuffle", "least-busy", "latency-based-routing", "usage-based-routing-v2"]
AccessMode = Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod"]
Phase = Literal["Pending", "Progressing", "Ready", "Degraded", "Failed"]

# Kubernetes object that passes through to the pod untouched; typed as "any object".
KubernetesObject = Annotated[
    dict[str, Any], WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True})
]

# Names that Kubernetes itself validates; the patterns catch typos before the pod is built.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
# A container image reference: [registry[:port]/]path[:tag][@sha256:digest] (the distribution grammar,
# lower-case path components). Empty means "the operator's default".
IMAGE_REFERENCE = (
    r"^$|^([a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*(:[0-9]+)?/)?"
    r"[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*"
    r"(:[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)
RESOURCE_NAME = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$"
GGUF_VARIANT = r"^[A-Za-z0-9_]+$"

MAX_FALLBACKS = 8
API_VERSION = f"{GROUP}/{VERSION}"


def per_engine(field: str) -> str:
    """How each engine applies a spec field, from the engine descriptors: "vLLM: --max-model-len; ..."."""
    return "; ".join(f"{e.title}: {e.field_docs[field]}" for e in ENGINES.values() if field in e.field_docs) + "."


def engines_where(test: Callable[[EngineDescriptor], bool]) -> str:
    """The engine names for which `test` holds, as "vllm, sglang"."""
    return ", ".join(e.name for e in ENGINES.values() if test(e)) or "none"


def _add_cel_rules(schema: dict[str, Any], model: type[BaseModel]) -> None:
    rules: tuple[Rule, ...] = getattr(model, "rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [rule.to_cel() for rule in rules]


class SpecModel(BaseModel):
    """A part of the spec: camelCase aliases, unknown fields rejected, types as strict as the apiserver."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        strict=True,  # "8" is not an integer for the apiserver, so not for us either
        json_schema_extra=_add_cel_rules,
    )
    rules: ClassVar[tuple[Rule, ...]] = ()


def _sub_object(model: type[BaseModel], description: str) -> Any:
    """A nested object that is always present, defaulted to `{}` so its own defaults apply."""
    return Field(default_factory=model, description=description, json_schema_extra={"default": {}})


# --- references and Kubernetes pass-through types ---------------------------------------------


class SecretKeyRef(SpecModel):
    """A key of a Secret in the LLMService's namespace. The value is only ever referenced
    (env valueFrom.secretKeyRef), never copied into ConfigMaps, arguments, logs or status."""

    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN,
        description="Name of the Secret, in the same namespace as the LLMService.",
    )
    key: str = Field(
        min_length=1, max_length=253, pattern=SECRET_KEY,
        description="Key inside the Secret whose value is used.",
    )


class EnvVar(SpecModel):
    """A container environment variable, as in a Pod spec."""

    name: str = Field(min_length=1, max_length=253, description="Name of the environment variable.")
    value: str | None = Field(
        default=None, max_length=32768, description="Literal value. Mutually exclusive with valueFrom."
    )
    value_from: KubernetesObject | None = Field(
        default=None,
        description="Source of the value (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef), "
        "passed to the Pod unchanged.",
    )


class LocalObjectReference(SpecModel):
    """The name of an object in the LLMService's namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the object.")


class Toleration(SpecModel):
    """A Pod toleration, passed to the Pods unchanged."""

    key: str | None = Field(
        default=None, max_length=316, description="Taint key; empty with Exists matches all."
    )
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal (Kubernetes' default: Equal)."
    )
    value: str | None = Field(default=None, max_length=63, description="Taint value to match with Equal.")
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None, description="For NoExecute: how long the Pod stays bound after the taint appears."
    )


# --- spec -----------------------------------------------------------------------------------

# Values the cross-field rules of LLMServiceSpec quote; CEL spells out the defaults because `has()` sees the
# object before nested defaults apply.
GPUS = Value("(has(self.resources) && has(self.resources.gpus) ? self.resources.gpus : 1)",
             lambda s: s.resources.gpus)
GROUP_GPUS = Value(f"({GPUS.cel} > 0 ? {GPUS.cel} : 1) * {NODES.cel}", lambda s: _group_gpus(s))
TP = Value(f"(has(self.serving) && has(self.serving.tensorParallelSize) ? self.serving.tensorParallelSize "
           f": ({GPUS.cel} > 0 ? {GPUS.cel} : 1))", lambda s: effective_tensor_parallel_size(s))
ACCESS_MODE = Value("(has(self.storage) && has(self.storage.accessMode) ? self.storage.accessMode : 'ReadWriteOnce')",
                    lambda s: s.storage.access_mode if s.storage else None)


def _group_gpus(spec: Any) -> int:
    """GPUs of one replica: every Pod of its group."""
    return max(spec.resources.gpus, 1) * spec.resources.nodes


def _world_size_valid(spec: Any) -> bool:
    pp = spec.serving.pipeline_parallel_size
    if pp is None:
        return True
    world = effective_tensor_parallel_size(spec) * pp
    return world == _group_gpus(spec) if spec.resources.nodes > 1 else world <= _group_gpus(spec)



class Model(SpecModel):
    """The model to serve."""

    name: str = Field(
        min_length=1, max_length=512,
        description="Required. The model to serve: a Hugging Face repo id (meta-llama/Llama-3.1-8B-Instruct), "
        "or for ollama a tag. " + per_engine("model.name"),
    )
    served_name: str | None = Field(
        default=None, max_length=253,
        description="The name clients send as \"model\" in OpenAI-style requests. "
        + per_engine("model.servedName") + " Default: the LLMService's metadata.name.",
    )
    revision: str | None = Field(
        default=None, max_length=253,
        description="Hugging Face revision (branch, tag or commit) to pin. " + per_engine("model.revision")
        + " Empty or unset: the repository's default branch.",
    )
    parameters: str | None = Field(
        default=None, max_length=32, pattern=PARAMETER_COUNT_PATTERN,
        description="Total parameter count with an optional K, M, B or T suffix (109B, 8B, 1.5B, 500M). "
        "Optional; with a GPU memory size (resources.gpuMemory or a known gpuProduct) it enables the fit "
        "check, which refuses a spec whose weights cannot fit before any GPU is claimed.",
    )
    token_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding a Hugging Face token for gated or private models, passed as an "
        "environment variable from the Secret (never copied). " + per_engine("model.tokenSecretRef"),
    )

    def parameter_count(self) -> float | None:
        """`parameters` as a number (1.09e11 for 109B), or None when not given."""
        return parse_parameter_count(self.parameters) if self.parameters else None


class Quantization(SpecModel):
    """How the weights are quantized. The checkpoint must already be quantized this way,
    except bitsandbytes and fp8, which vLLM and TGI can apply while loading."""

    method: QuantizationMethod = Field(
        default="none",
        description="none | awq | gptq | bitsandbytes | fp8 | gguf. " + per_engine("quantization.method")
        + " Default: none (16-bit weights).",
    )
    bits: int | None = Field(
        default=None, ge=1, le=8,
        description="Bits per weight. bitsandbytes: 4 (NF4) or 8 (int8), default 8; gguf: the variant's "
        "bits, default 4. Rejected for other methods, whose checkpoints fix their own precision. Used by "
        "the fit check.",
    )
    variant: str | None = Field(
        default=None, max_length=32, pattern=GGUF_VARIANT,
        description="gguf only: the GGUF quantization type, e.g. Q4_K_M or Q8_0. Ollama pulls "
        "<model.name>:<variant> when model.name has no tag; the fit check reads its bits.",
    )

    rules = (
        Rule(
            field="variant",
            cel="!has(self.variant) || self.method == 'gguf'",
            valid=lambda q: q.variant is None or q.method == "gguf",
            message="variant {variant} is a GGUF quantization type, but quantization.method is {method}: "
            "set method: gguf, or remove variant",
            values={"variant": Value("self.variant", lambda q: q.variant),
                    "method": Value("self.method", lambda q: q.method)},
            reason="FieldValueForbidden",
        ),
        Rule(
            field="bits",
            cel="!has(self.bits) || self.method in ['bitsandbytes', 'gguf']",
            valid=lambda q: q.bits is None or q.method in ("bitsandbytes", "gguf"),
            message="bits is only set for method bitsandbytes (4 or 8) or gguf; method {method} uses the "
            "checkpoint's own precision: remove bits",
            values={"method": Value("self.method", lambda q: q.method)},
            reason="FieldValueForbidden",
        ),
        Rule(
            field="bits",
            cel="!has(self.bits) || self.method != 'bitsandbytes' || self.bits in [4, 8]",
            valid=lambda q: q.method != "bitsandbytes" or q.bits in (None, 4, 8),
            message="bitsandbytes quantizes to 4 bits (NF4) or 8 bits (int8), not {bits}: set bits to 4 or 8",
            values={"bits": Value("self.bits", lambda q: q.bits)},
        ),
    )


class Resources(SpecModel):
    """Compute resources and scheduling of the engine Pods."""

    gpus: int = Field(
        default=1, ge=0, le=64,
        description="GPUs per engine Pod, requested as limits <gpuResource>: N. 0 runs on CPU only. "
        "Also the default tensor parallel size. Default: 1.",
    )
    nodes: int = Field(
        default=1, ge=1, le=64,
        description="Nodes one replica spans, each running one Pod with `gpus` GPUs. 1 (default): a Deployment. "
        "More than 1 serves a model larger than one node: the operator creates a LeaderWorkerSet "
        "(leaderworkerset.x-k8s.io, which must be installed) whose every replica is a group of one leader Pod, "
        "which serves the API, and nodes-1 worker Pods, scheduled, restarted and scaled together, each on a "
        "node of its own. The model is split across gpus x nodes GPUs (serving.tensorParallelSize x "
        "serving.pipelineParallelSize). Engines: " + engines_where(lambda e: e.capabilities.multi_node) + ".",
    )
    gpu_resource: str = Field(
        default="nvidia.com/gpu", max_length=253, pattern=RESOURCE_NAME,
        description="The extended resource that counts GPUs: nvidia.com/gpu, amd.com/gpu, or a MIG profile "
        "such as nvidia.com/mig-3g.40gb. Default: nvidia.com/gpu.",
    )
    gpu_product: str | None = Field(
        default=None, max_length=63, pattern=LABEL_VALUE,
        description="GPU model to schedule on, added as nodeSelector nvidia.com/gpu.product (e.g. "
        "NVIDIA-H100-80GB-HBM3, NVIDIA-GeForce-RTX-4090). Known products also give the fit check their "
        "memory size. Only with gpus > 0.",
    )
    gpu_memory: Quantity | None = Field(
        default=None,
        description="Memory of one GPU (80Gi, 24Gi), for the fit check; overrides the size known from "
        "gpuProduct. Only with gpus > 0.",
    )
    cpu: Quantity | None = Field(
        default=None,
        description="CPU request of the engine container (e.g. \"8\" or 7500m). No CPU limit is set.",
    )
    memory: Quantity | None = Field(
        default=None,
        description="Memory request of the engine container (e.g. 64Gi); the limit is set to the same value.",
    )
    node_selector: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict,
        description="Node labels the engine Pods require; merged with the gpuProduct selector.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=32,
        description="Tolerations of the engine Pods. The nvidia.com/gpu NoSchedule toleration is added "
        "when gpus > 0.",
    )
    affinity: KubernetesObject | None = Field(
        default=None, description="Pod affinity of the engine Pods (a Kubernetes Affinity), passed unchanged."
    )

    rules = (
        Rule(
            field="gpuProduct",
            cel="!has(self.gpuProduct) || self.gpuProduct == '' || self.gpus > 0",
            valid=lambda r: r.gpus > 0 or not r.gpu_product,
            message="gpuProduct {product} selects a GPU node, but gpus is 0 (CPU only): set gpus to at least "
            "1, or remove gpuProduct",
            values={"product": Value("self.gpuProduct", lambda r: r.gpu_product)},
            reason="FieldValueForbidden",
        ),
        Rule(
            field="gpuMemory",
            cel="!has(self.gpuMemory) || self.gpus > 0",
            valid=lambda r: r.gpus > 0 or r.gpu_memory is None,
            message="gpuMemory sizes GPUs for the fit check, but gpus is 0 (CPU only): set gpus to at "
            "least 1, or remove gpuMemory",
            reason="FieldValueForbidden",
        ),
    )


class Serving(SpecModel):
    """How the engine serves requests. Fields that belong to one engine are rejected for the others."""

    max_model_len: int | None = Field(
        default=None, ge=1,
        description="Context length: prompt plus generated tokens per request. " + per_engine("serving.maxModelLen")
        + " Unset: the engine's default (usually the model's full context, which needs the most KV-cache memory).",
    )
    max_input_tokens: int | None = Field(
        default=None, ge=1,
        description="The longest prompt accepted; must be less than maxModelLen. "
        + per_engine("serving.maxInputTokens") + " Rejected for "
        + engines_where(lambda e: "maxInputTokens" not in e.capabilities.settings) + ".",
    )
    gpu_memory_utilization: float | None = Field(
        default=None, gt=0, le=1,
        description="The fraction of each GPU's memory the engine may use for weights and KV cache, in (0, 1]. "
        + per_engine("serving.gpuMemoryUtilization") + " Rejected for "
        + engines_where(lambda e: "gpuMemoryUtilization" not in e.capabilities.settings) + ".",
    )
    tensor_parallel_size: int | None = Field(
        default=None, ge=1, le=64,
        description="GPUs each layer is split across. " + per_engine("serving.tensorParallelSize")
        + " At most resources.gpus on one node; across nodes it must divide resources.gpus x resources.nodes. "
        "Default: resources.gpus (1 on CPU).",
    )
    pipeline_parallel_size: int | None = Field(
        default=None, ge=1, le=64,
        description="Pipeline stages the model's layers are split into; tensorParallelSize x "
        "pipelineParallelSize GPUs hold one replica. " + per_engine("serving.pipelineParallelSize")
        + " On several nodes (resources.nodes > 1) it must make tensorParallelSize x pipelineParallelSize = "
        "resources.gpus x resources.nodes. Default: resources.nodes when tensorParallelSize is at most "
        "resources.gpus (tensor parallel within a node, one stage per node), else the stages that fill the "
        "group's GPUs; 1 on one node. Rejected for "
        + engines_where(lambda e: "pipelineParallelSize" not in e.capabilities.settings) + ".",
    )
    enable_prefix_caching: bool | None = Field(
        default=None,
        description="Reuse the KV cache of shared prompt prefixes (a consistent system prompt). "
        + per_engine("serving.enablePrefixCaching") + " Unset: the engine's default. true is rejected for "
        + engines_where(lambda e: "enablePrefixCaching" not in e.capabilities.settings) + ".",
    )
    max_concurrent_requests: int | None = Field(
        default=None, ge=1,
        description="Requests processed at once per replica. " + per_engine("serving.maxConcurrentRequests")
        + " Unset: the engine's default.",
    )
    extra_args: list[Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=list, max_length=64,
        description="Arguments appended verbatim to the engine's command line, after the generated ones.",
    )
    env: list[EnvVar] = Field(
        default_factory=list, max_length=64,
        description="Extra environment variables of the engine container (Kubernetes EnvVar list).",
    )

    rules = (
        Rule(
            field="maxInputTokens",
            cel="!has(self.maxInputTokens) || !has(self.maxModelLen) "
            "|| self.maxInputTokens < self.maxModelLen",
            valid=lambda s: s.max_input_tokens is None or s.max_model_len is None
            or s.max_input_tokens < s.max_model_len,
            message="maxInputTokens ({input}) must be less than maxModelLen ({total}), which counts prompt "
            "and generated tokens together: lower maxInputTokens or raise maxModelLen",
            values={"input": Value("self.maxInputTokens", lambda s: s.max_input_tokens),
                    "total": Value("self.maxModelLen", lambda s: s.max_model_len)},
        ),
    )


class Storage(SpecModel):
    """A PersistentVolumeClaim `<name>-model-cache` that keeps downloaded weights across restarts.
    Never deleted while the LLMService exists."""

    size: Quantity = Field(
        description="Required. Size of the model cache, e.g. 200Gi; leave room for the weights."
    )
    storage_class_name: str | None = Field(
        default=None, max_length=253,
        description="StorageClass of the claim. Empty or unset: the cluster's default StorageClass.",
    )
    access_mode: AccessMode = Field(
        default="ReadWriteOnce",
        description="Access mode of the claim. ReadWriteMany lets replicas on several nodes share one cache. "
        "Default: ReadWriteOnce.",
    )


class Autoscaling(SpecModel):
    """Replica autoscaling on time to first token, queue depth, GPU utilization and KV-cache use. When
    enabled, the operator owns the replica count and spec.replicas is ignored."""

    enabled: bool = Field(
        default=False, description="Scale the engine between minReplicas and maxReplicas. Default: false."
    )
    min_replicas: int = Field(
        default=1, ge=0, le=1000, description="Fewest replicas; 0 allows scale to zero. Default: 1."
    )
    max_replicas: int = Field(default=4, ge=1, le=1000, description="Most replicas. Default: 4.")
    target_queue_depth: float = Field(
        default=5, gt=0,
        description="Waiting requests per ready replica to aim for; more waiting requests add replicas. "
        "Default: 5.",
    )
    target_gpu_utilization: int = Field(
        default=80, ge=1, le=100, alias="targetGPUUtilization",
        description="GPU utilization to aim for, in percent per GPU. Default: 80.",
    )
    target_kv_cache_usage: float = Field(
        default=0.8, gt=0, le=1, alias="targetKVCacheUsage",
        description="Fraction of the KV cache in use to aim for, in (0, 1]. Read from the engines that export "
        "it (" + engines_where(lambda e: bool(e.metrics.kv_cache)) + "); ignored for the others. Default: 0.8. "
        "The target holds at the peak request rate of the last 15 minutes, too: with the time per output token "
        "measured (" + engines_where(lambda e: bool(e.metrics.kv_cache and e.metrics.generation_tokens))
        + "), the operator keeps the replicas that peak would need, since the cache fills faster than the load "
        "grows (each decode step reads all of it); it never adds replicas on that estimate alone.",
    )
    target_prompt_tokens_per_second: int | None = Field(
        default=None, ge=1, le=10_000_000,
        description="Prompt tokens per second one replica can prefill. When set ("
        + engines_where(lambda e: bool(e.metrics.prompt_tokens)) + "), the operator "
        "provisions for the peak prompt-token rate of the last 15 minutes, with 10% headroom, "
        "so capacity added for one burst is there for the next; it catches bursts before a queue forms. "
        "About 20000 for an 8B model on one H100 and 8000 on one A100 (see bench/README.md); measure your "
        "model. Unset (default): off, and replicas follow the queue, KV-cache and GPU signals.",
    )
    target_time_to_first_token_seconds: float = Field(
        default=2, ge=0, le=600,
        description="Time to first token to aim for, in seconds, on top of each prompt's own prefill time "
        "(which no replica count removes): enough replicas that 99% of requests start their prefill within "
        "it. The operator learns what a replica can do from the engine's own latency histograms (engines: "
        + engines_where(lambda e: e.metrics.first_token_seconds is not None) + ") over the last 15 minutes, "
        "so it needs no per-model or per-GPU setting, and provisions for the busy moments of those 15 "
        "minutes. It never scales down on less than 15 minutes of that history (a new LLMService, an "
        "operator restart). 0 turns it off. Default: 2.",
    )
    scale_up_stabilization_seconds: int = Field(
        default=0, ge=0, le=3600,
        description="How long a higher replica count must be wanted before scaling up. Default: 0.",
    )
    scale_down_delay_seconds: int = Field(
        default=300, ge=0, le=86400,
        description="How long a lower replica count must be wanted before scaling down; model loading is "
        "slow, so this is long. For bursty traffic whose bursts are shorter than a replica's cold start, 900 "
        "keeps capacity between bursts (bench/README.md). Default: 300.",
    )

    rules = (
        Rule(
            field="minReplicas",
            # has(): the apiserver also checks the schema's `default: {}`, before nested defaults apply
            cel="!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
            valid=lambda a: a.min_replicas <= a.max_replicas,
            message="minReplicas ({min}) must not exceed maxReplicas ({max}): lower minReplicas or raise "
            "maxReplicas",
            values={"min": Value("self.minReplicas", lambda a: a.min_replicas),
                    "max": Value("self.maxReplicas", lambda a: a.max_replicas)},
        ),
    )


class Fallback(SpecModel):
    """A target the router tries, in order, when the local engine fails: a LiteLLM model
    (a managed API) or another LLMService in the same namespace."""

    model: str | None = Field(
        default=None, min_length=1, max_length=253,
        description="LiteLLM model string, provider/model (openai/gpt-4o, "
        "anthropic/claude-3-5-sonnet-latest). Exactly one of model or llmService.",
    )
    api_base: str | None = Field(
        default=None, max_length=2048,
        description="Base URL of the model's API, for self-hosted or proxied providers. Only with model.",
    )
    api_key_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the provider's API key. Only with model."
    )
    llm_service: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=DNS_SUBDOMAIN,
        description="Name of another LLMService in the same namespace. Exactly one of model or llmService.",
    )

    rules = (
        Rule(
            field="model",
            cel="has(self.model) != has(self.llmService)",
            valid=lambda f: (f.model is None) != (f.llm_service is None),
            message="a fallback sets {which}: set exactly one, model (a LiteLLM model string such as "
            "openai/gpt-4o) or llmService (another LLMService in this namespace)",
            values={"which": Value(
                "has(self.model) ? 'both model and llmService' : 'neither model nor llmService'",
                lambda f: "both model and llmService" if f.model is not None
                else "neither model nor llmService",
            )},
        ),
        Rule(
            field="apiKeySecretRef",
            cel="!has(self.llmService) "
            "|| (!has(self.apiKeySecretRef) && (!has(self.apiBase) || self.apiBase == ''))",
            valid=lambda f: f.llm_service is None or (f.api_key_secret_ref is None and not f.api_base),
            message="apiKeySecretRef and apiBase configure a model fallback, but this fallback is llmService "
            "{service}, reached inside the cluster: remove them, or use model instead of llmService",
            values={"service": Value("self.llmService", lambda f: f.llm_service)},
            reason="FieldValueForbidden",
        ),
    )


class Router(SpecModel):
    """The LiteLLM proxy in front of the engine (`<name>-router`, port 4000): the user-facing
    OpenAI-compatible endpoint, with retries and fallbacks."""

    enabled: bool = Field(
        default=True,
        description="Deploy the router. false: clients call the engine Service directly. Default: true.",
    )
    image: str | None = Field(
        default=None, max_length=512, pattern=IMAGE_REFERENCE,
        description="Overrides the LiteLLM image (a registry mirror, a pinned digest). Empty or unset: the "
        "operator's router image (`llm-operator run --router-image`, Helm value defaultImages.router), else "
        "the LiteLLM image the operator pins.",
    )
    replicas: int = Field(default=1, ge=1, le=100, description="Router replicas. Default: 1.")
    node_selector: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict,
        description="Node labels the router Pods require (the router needs no GPU: e.g. a CPU node pool).",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=32, description="Tolerations of the router Pods.",
    )
    routing_strategy: RoutingStrategy = Field(
        default="least-busy",
        description="LiteLLM routing strategy: simple-shuffle | least-busy | latency-based-routing | "
        "usage-based-routing-v2. LiteLLM applies it among the deployments of one model name; the router "
        "reaches the local engine (and each fallback) through one Service address, and opens a new connection "
        "for every request to an engine Service (Connection: close), so the Service spreads requests, not "
        "long-lived connections, over the engine's ready replicas. Default: least-busy.",
    )
    timeout_seconds: int = Field(
        default=600, ge=1, le=86400, description="Timeout of one request, in seconds. Default: 600."
    )
    num_retries: int = Field(
        default=2, ge=0, le=10, description="Retries of a failed request before falling back. Default: 2."
    )
    master_key_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the router's master key (clients send it as the API key). "
        "Unset: the operator generates the Secret <name>-router-key.",
    )
    fallbacks: list[Fallback] = Field(
        default_factory=list, max_length=MAX_FALLBACKS,
        description=f"Targets tried in order when the local engine fails (at most {MAX_FALLBACKS}).",
    )


class LLMServiceSpec(SpecModel):
    """The desired state of an LLMService: one model, served by one engine, behind a LiteLLM router."""

    engine: Engine = Field(
        description="Required. The inference server, and the image the operator pins for it: "
        + "; ".join(f"{e.name} ({e.title}, {e.image})" for e in ENGINES.values()) + ".",
    )
    image: str | None = Field(
        default=None, max_length=512, pattern=IMAGE_REFERENCE,
        description="Overrides the engine image (e.g. a pinned tag, a registry mirror or a ROCm build). Empty "
        "or unset: the operator's image for the engine (`llm-operator run --<engine>-image`, "
        "Helm values defaultImages.<engine>), else the engine image the operator pins.",
    )
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list, max_length=16,
        description="Secrets in this namespace used to pull the engine and router images (the Pods' "
        "imagePullSecrets). The operator's own list (`llm-operator run --image-pull-secret`, Helm value "
        "workloadImagePullSecrets) is added after these; those Secrets must exist in this namespace too.",
    )
    model: Model = Field(description="Required. The model to serve.")
    quantization: Quantization = _sub_object(
        Quantization,
        "How the weights are quantized. The checkpoint must already be quantized this way, except for "
        "bitsandbytes and fp8, which vLLM and TGI apply while loading. Default: none (16-bit weights).",
    )
    resources: Resources = _sub_object(Resources, "GPUs, CPU, memory and scheduling of the engine Pods.")
    serving: Serving = _sub_object(
        Serving,
        "Engine settings: context length, parallelism, batching, extra arguments and env. Settings that "
        "belong to one engine are rejected for the others.",
    )
    storage: Storage | None = Field(
        default=None,
        description="A persistent model cache (PersistentVolumeClaim <name>-model-cache). Unset: an "
        "emptyDir, so every new Pod downloads the weights again.",
    )
    replicas: int = Field(
        default=1, ge=0, le=1000,
        description="Engine replicas when autoscaling is off; the target of `kubectl scale`. Default: 1.",
    )
    autoscaling: Autoscaling = _sub_object(
        Autoscaling,
        "Replica autoscaling on queue depth, GPU utilization and KV-cache use. When enabled, the operator "
        "sets the replica count and spec.replicas is ignored. Default: off.",
    )
    router: Router = _sub_object(
        Router,
        "The LiteLLM proxy in front of the engine (<name>-router, port 4000): the OpenAI-compatible "
        "endpoint clients use, with retries and fallbacks. Default: on.",
    )

    # Rules that read both spec.engine and a nested field sit here, on the smallest common object; what
    # each engine accepts comes from its descriptor (api/engine_rules.py).
    rules = (
        *engine_rules(ENGINES.values()),
        Rule(
            field="serving.tensorParallelSize",
            cel="!has(self.serving) || !has(self.serving.tensorParallelSize) || !has(self.resources) "
            f"|| self.resources.gpus == 0 || {NODES.cel} > 1 || self.serving.tensorParallelSize <= self.resources.gpus",
            valid=lambda s: s.serving.tensor_parallel_size is None or s.resources.gpus == 0 or s.resources.nodes > 1
            or s.serving.tensor_parallel_size <= s.resources.gpus,
            message="serving.tensorParallelSize ({size}) splits the model across more GPUs than "
            "resources.gpus ({gpus}) gives each Pod: raise resources.gpus or lower tensorParallelSize, or serve "
            "across nodes with resources.nodes",
            values={"size": TENSOR_PARALLEL_SIZE,
                    "gpus": Value("self.resources.gpus", lambda s: s.resources.gpus)},
        ),
        Rule(
            field="resources.gpus",
            cel=f"{NODES.cel} <= 1 || {GPUS.cel} >= 1",
            valid=lambda s: s.resources.nodes <= 1 or s.resources.gpus >= 1,
            message="resources.nodes ({nodes}) splits one replica over the GPUs of several nodes, but resources.gpus "
            "is 0: set resources.gpus to the GPUs of each node (e.g. 8), or resources.nodes to 1",
            values={"nodes": NODES},
        ),
        Rule(
            field="serving.tensorParallelSize",
            cel=f"{NODES.cel} <= 1 || !has(self.serving) || !has(self.serving.tensorParallelSize) "
            f"|| {GROUP_GPUS.cel} % self.serving.tensorParallelSize == 0",
            valid=lambda s: s.resources.nodes <= 1 or s.serving.tensor_parallel_size is None
            or _group_gpus(s) % s.serving.tensor_parallel_size == 0,
            message="serving.tensorParallelSize ({size}) must divide the GPUs of a group, resources.gpus x "
            "resources.nodes = {total}: set it to resources.gpus (tensor parallel within each node, the "
            "default) or to {total} (across all nodes)",
            values={"size": TENSOR_PARALLEL_SIZE, "total": GROUP_GPUS},
        ),
        Rule(
            field="serving.pipelineParallelSize",
            cel=f"!has(self.serving) || !has(self.serving.pipelineParallelSize) || ({NODES.cel} > 1 "
            f"? {TP.cel} * self.serving.pipelineParallelSize == {GROUP_GPUS.cel} "
            f": {TP.cel} * self.serving.pipelineParallelSize <= {GROUP_GPUS.cel})",
            valid=_world_size_valid,
            message="serving.tensorParallelSize x serving.pipelineParallelSize ({tp} x {pp}) must use {relation} "
            "the GPUs of a replica, resources.gpus x resources.nodes = {total}: change pipelineParallelSize, or "
            "remove it for the default",
            values={"tp": TP, "pp": Value("self.serving.pipelineParallelSize",
                                          lambda s: s.serving.pipeline_parallel_size),
                    "relation": Value(f"{NODES.cel} > 1 ? 'exactly' : 'at most'",
                                      lambda s: "exactly" if s.resources.nodes > 1 else "at most"),
                    "total": GROUP_GPUS},
        ),
        Rule(
            field="storage.accessMode",
            cel=f"{NODES.cel} <= 1 || !has(self.storage) || {ACCESS_MODE.cel} in ['ReadWriteMany', 'ReadOnlyMany']",
            valid=lambda s: s.resources.nodes <= 1 or s.storage is None
            or s.storage.access_mode in ("ReadWriteMany", "ReadOnlyMany"),
            message="the {nodes} Pods of a replica run on different nodes and all mount the model cache, but "
            "storage.accessMode is {mode}, which one node at a time can mount: set accessMode: ReadWriteMany "
            "(a shared file system), or remove storage (each Pod downloads to an emptyDir)",
            values={"nodes": NODES, "mode": ACCESS_MODE},
            reason="FieldValueForbidden",
        ),
    )


# --- status ---------------------------------------------------------------------------------


class StatusModel(BaseModel):
    """Status is written by the operator; tolerate what older or newer operators wrote."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


DateTime = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class Condition(StatusModel):
    """A kstatus-style condition: Ready, Reconciling, Stalled, ModelFits, RouterReady, SecretsFound,
    ScalingActive."""

    type: str = Field(
        max_length=316,
        description="Condition type: Ready, Reconciling, Stalled, ModelFits, RouterReady, SecretsFound, "
        "ScalingActive.",
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str | None = Field(default=None, max_length=1024, description="One CamelCase word for machines.")
    message: str | None = Field(default=None, max_length=32768, description="What happened, for people.")
    last_transition_time: DateTime | None = Field(default=None, description="When status last changed.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation the condition was computed for."
    )


class ModelSizeStatus(StatusModel):
    """A parameter count the operator read from the Hugging Face Hub."""

    model: str = Field(description="spec.model.name it counts.")
    revision: str = Field(description="The revision it was read at (main when spec.model.revision is unset).")
    parameters: int = Field(ge=0, description="Total parameters, from the safetensors metadata.")
    dtype: str | None = Field(default=None, description="The dtype that holds most parameters (BF16, F8_E4M3).")
    source: str | None = Field(default=None, description="The Hub endpoint and what was read there.")
    commit: str | None = Field(default=None, description="The commit the revision resolved to.")


class LLMServiceStatus(StatusModel):
    """The observed state, written by the operator (kstatus-compatible)."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this status describes."
    )
    phase: Phase | None = Field(
        default=None, description="Summary for people: Pending | Progressing | Ready | Degraded | Failed."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Reconciling, Stalled, ModelFits (with the fit check's numbers), RouterReady, "
        "SecretsFound (False names each Secret the engine Pods reference that does not exist; the kubelet "
        "would stop them with CreateContainerConfigError) and ScalingActive (with autoscaling).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    replicas: int | None = Field(
        default=None, ge=0, description="Engine Pods that exist (scale subresource)."
    )
    ready_replicas: int | None = Field(default=None, ge=0, description="Engine Pods that are ready.")
    desired_replicas: int | None = Field(
        default=None, ge=0,
        description="The autoscaler's latest decision: the engine replicas it wants. Written by the autoscaler "
        "only; absent while autoscaling is off.",
    )
    ready: str | None = Field(
        default=None, max_length=32,
        description="readyReplicas/replicas as text (\"2/3\"), for the READY column of kubectl get.",
    )
    selector: str | None = Field(
        default=None,
        description="Label selector of the engine Pods (scale subresource, for HPA and kubectl).",
    )
    endpoint: str | None = Field(
        default=None, description="OpenAI-compatible base URL for clients, e.g. http://<name>-router.<ns>.svc:4000/v1."
    )
    model_size: ModelSizeStatus | None = Field(
        default=None,
        description="The model's parameter count read from the Hugging Face Hub (safetensors metadata at the "
        "pinned revision) when spec.model.parameters is unset: read once per model and revision and used by "
        "the fit check.",
    )
    last_scale_time: DateTime | None = Field(default=None, description="When the replica count last changed.")
    scale_reason: str | None = Field(default=None, description="Why the replica count last changed.")


# --- the object -----------------------------------------------------------------------------


class ObjectMeta(BaseModel):
    """The parts of metadata the operator reads; the rest passes through."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class LLMService(BaseModel):
    """An LLMService: serve one large language model with one inference engine behind a LiteLLM router."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: LLMServiceSpec
    status: LLMServiceStatus | None = None
