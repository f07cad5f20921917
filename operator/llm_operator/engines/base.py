"""What every engine module declares: its `Engine` descriptor, and the engine-specific half of the Pod.

An engine decides its image, arguments, environment, port, health path, where it keeps
weights and how much it can be locked down (`EngineContainer`); what the API accepts for it
(`Capabilities`, which become CEL rules); which metrics the autoscaler reads (`EngineMetrics`);
and the model name the router sends it. The resource builders add everything that is the same
for all engines (labels, GPUs, scheduling, volumes, probes' timings).

Nothing here imports the API models at run time: the API builds its engine rules from these
descriptors, so the engines sit below it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llm_operator.api.models import LLMService, LLMServiceSpec, SecretKeyRef

QUANTIZATION_METHODS = ("none", "awq", "gptq", "bitsandbytes", "fp8", "gguf")

MODEL_CACHE_VOLUME = "model-cache"
SHM_VOLUME = "dshm"
TMP_VOLUME = "tmp"


@dataclass(frozen=True)
class EngineContainer:
    """The engine-specific parts of the engine container and its Pod."""

    image: str
    command: list[str]
    args: list[str]
    env: list[dict[str, Any]]
    port: int
    health_path: str
    cache_mount_path: str
    metrics_path: str | None
    shm_size_limit: str | None = None
    """An in-memory emptyDir on /dev/shm (NCCL and PyTorch workers use it); "" = no limit."""
    run_as_user: int = 1000
    read_only_root_filesystem: bool = False
    init_containers: list[dict[str, Any]] = field(default_factory=list)
    readiness_exec: list[str] | None = None
    """An exec readiness check instead of HTTP on health_path, when HTTP cannot tell readiness."""
    worker_args: list[str] | None = None
    """Arguments of the worker Pods of a multi-node group (resources.nodes > 1), which join the leader's
    engine and serve no API; `args` are then the leader's. None on one node."""


def secret_env(name: str, ref: SecretKeyRef) -> dict[str, Any]:
    """An env var filled from a Secret by the kubelet: the value never passes through us."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def hf_token_env(service: LLMService) -> list[dict[str, Any]]:
    ref = service.spec.model.token_secret_ref
    return [secret_env("HF_TOKEN", ref)] if ref else []


def user_env(service: LLMService) -> list[dict[str, Any]]:
    return [env.model_dump(by_alias=True, exclude_none=True) for env in service.spec.serving.env]


def flag(name: str, value: object | None) -> list[str]:
    """`--name value`, or nothing when the value is unset (the engine keeps its default)."""
    return [] if value is None or value == "" else [name, str(value)]


def served_name(service: LLMService) -> str:
    """The name clients send as "model": spec.model.servedName, else metadata.name."""
    return service.spec.model.served_name or service.metadata.name or ""


def effective_tensor_parallel_size(spec: LLMServiceSpec) -> int:
    """serving.tensorParallelSize, else resources.gpus (1 on CPU)."""
    return spec.serving.tensor_parallel_size or max(spec.resources.gpus, 1)


def effective_pipeline_parallel_size(spec: LLMServiceSpec) -> int:
    """serving.pipelineParallelSize, else the stages that fill every GPU of the group: resources.nodes when
    tensor parallelism stays within a node (the common layout: tensor parallel inside a node, pipeline
    stages across nodes), 1 on one node."""
    if spec.serving.pipeline_parallel_size:
        return spec.serving.pipeline_parallel_size
    group_gpus = max(spec.resources.gpus, 1) * spec.resources.nodes
    return max(1, group_gpus // effective_tensor_parallel_size(spec))


def multi_node(spec: LLMServiceSpec) -> bool:
    """One replica spans several Pods on several nodes (a LeaderWorkerSet group)."""
    return spec.resources.nodes > 1


@dataclass(frozen=True)
class EngineMetrics:
    """Prometheus metric names the autoscaler reads from the engine Pods (the first name that has
    series wins, so an engine's renamed metric can be listed with its old name)."""

    waiting: tuple[str, ...] = ()
    """Gauge: requests queued, not yet running. None: the router's in-flight gauge stands in."""
    running: tuple[str, ...] = ()
    """Gauge: requests in the running batch."""
    kv_cache: tuple[str, ...] = ()
    """Gauge in [0, 1]: share of the KV cache in use."""
    prompt_tokens: str | None = None
    """Counter: prompt tokens processed (its rate is the prefill load)."""
    generation_tokens: str | None = None
    """Counter: output tokens generated, as they are (running requests over its rate: the time per output
    token, which the KV-cache load model reads)."""
    first_token_seconds: str | None = None
    """Histogram: time to first token (its _count is the first tokens served)."""
    prefill_seconds: str | None = None
    """Histogram: time from a request's scheduling to its first token. None: TTFT minus queue time."""
    queue_seconds: str | None = None
    """Histogram: time a request waited before its prefill started."""


@dataclass(frozen=True)
class Capabilities:
    """What the API accepts for an engine: each gap becomes a CEL rule with a message naming the
    engines that do accept the value (api/engine_rules.py)."""

    quantization: tuple[str, ...] = QUANTIZATION_METHODS
    """quantization.method values the engine loads."""
    quantization_note: str = ""
    """Why some methods are missing, quoted in the rule's message."""
    tensor_parallel: bool = True
    """Whether serving.tensorParallelSize > 1 works (one model split over several GPUs)."""
    multi_node: bool = False
    """Whether one replica can span several nodes (resources.nodes > 1, a LeaderWorkerSet group)."""
    settings: tuple[str, ...] = ()
    """Optional serving fields only some engines have (SETTINGS in api/engine_rules.py) that this one maps."""
    default_memory_utilization: float = 0.9
    """The share of GPU memory the engine uses when serving.gpuMemoryUtilization is unset (fit check)."""


@dataclass(frozen=True)
class Engine:
    """Everything the operator knows about one inference server, in one place (engines/__init__.py
    registers one per engine)."""

    name: str
    """The spec.engine value."""
    title: str
    """How its project writes its name (messages, descriptions)."""
    image: str
    """The image the operator pins."""
    service_port: int
    """The port of the engine Service (the container's port may differ)."""
    container: Callable[[LLMService], EngineContainer]
    upstream_model: Callable[[LLMService], str]
    """The `model` the engine expects in an OpenAI request (the router's upstream model name)."""
    managed_flags: Mapping[str, str | None]
    """Flags the operator sets from the spec -> the field that sets them (None: the operator itself).
    Passing one again in extraArgs would contradict the spec, so it is refused."""
    field_docs: Mapping[str, str] = field(default_factory=dict)
    """How the engine applies each spec field (`serving.maxModelLen` -> `--max-model-len`): the CRD's
    field descriptions list these for every engine."""
    metrics: EngineMetrics = EngineMetrics()
    capabilities: Capabilities = Capabilities()
    problems: Callable[[LLMService], list[str]] = lambda service: []
    """Checks the CRD cannot express (a file name's suffix), as messages naming field, value and fix."""
    weights_for_fit: Callable[[LLMServiceSpec], tuple[str, str | None]] | None = None
    """(method, GGUF variant) the fit check should assume, when the spec's own do not say it."""
