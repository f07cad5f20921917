"""Invalid LLMServices made at random from the CRD's schema, shared by the unit and e2e suites.

`invalid_document(rnd, index)` takes a valid manifest (BASE_SPEC with one of GOOD_CASES, or a richer spec)
and breaks exactly one thing in it, chosen with `rnd` (a `random.Random`; hypothesis' `st.randoms()` in
tests/unit/api/test_fuzzed_specs.py, a seeded one in tests/e2e/test_hostile_input.py):

- wrong-type: a value of a JSON type the schema does not allow at one field;
- out-of-range: below minimum / above maximum, shorter than minLength, longer than maxLength, more items
  than maxItems;
- enum, pattern: a string the enum or the pattern refuses;
- unknown-field: a key the object does not have; required: a required key removed;
- rule: one of the cross-field rules (CEL in the CRD) broken with random numbers: tensorParallelSize above
  gpus, minReplicas above maxReplicas, nodes > 1 with an engine that serves on one node, ...

Fields, bounds, enums and patterns are read from `llm_operator.api.crd.openapi_schema()`, so a field added
to the API is fuzzed without a change here. Each `Fuzzed` names the field whose message must name it.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from cases.invalid_llmservices import BASE_SPEC, manifest, merged
from cases.valid_llmservices import GOOD_CASES
from llm_operator.api.crd import openapi_schema
from llm_operator.engines import ENGINES

Path = tuple[str | int, ...]
# A map's value (nodeSelector) is fuzzed under this key.
MAP_KEY = "pool"

# Valid specs to break: BASE_SPEC with each good case, and one that sets nearly every object.
RICH_SPEC: dict[str, Any] = merged(BASE_SPEC, {
    "image": "registry.example.com/vllm/vllm-openai:v0.32.0",
    "imagePullSecrets": [{"name": "regcred"}],
    "model": {"servedName": "llama", "revision": "main", "parameters": "8B",
              "tokenSecretRef": {"name": "hf-token", "key": "token"}},
    "resources": {"gpus": 2, "gpuProduct": "NVIDIA-L4", "gpuMemory": "24Gi", "cpu": "8", "memory": "64Gi",
                  "nodeSelector": {MAP_KEY: "gpu"}, "tolerations": [{"key": "dedicated", "operator": "Exists"}]},
    "serving": {"maxModelLen": 8192, "gpuMemoryUtilization": 0.9, "tensorParallelSize": 2,
                "extraArgs": ["--enforce-eager"], "env": [{"name": "A", "value": "1"}]},
    "storage": {"size": "100Gi", "storageClassName": "fast"},
    "autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 3},
    "router": {"replicas": 2, "masterKeySecretRef": {"name": "router-key", "key": "key"},
               "fallbacks": [{"model": "openai/gpt-4o", "apiKeySecretRef": {"name": "openai", "key": "api-key"}}]},
})
BASES: dict[str, dict[str, Any]] = {
    "base": copy.deepcopy(BASE_SPEC), "rich": RICH_SPEC,
    **{name: merged(BASE_SPEC, patch) for name, patch in GOOD_CASES.items()},
}

# What an object or list item is made of when a mutation needs one that the base lacks.
OBJECT_SAMPLES: dict[Path, dict[str, Any]] = {
    ("model", "tokenSecretRef"): {"name": "hf-token", "key": "token"},
    ("storage",): {"size": "10Gi"},
    ("router", "masterKeySecretRef"): {"name": "router-key", "key": "key"},
    ("router", "fallbacks", 0, "apiKeySecretRef"): {"name": "openai", "key": "api-key"},
}
ITEM_SAMPLES: dict[Path, Callable[[int], Any]] = {
    ("imagePullSecrets",): lambda i: {"name": f"regcred-{i}"},
    ("resources", "tolerations"): lambda i: {"key": f"taint-{i}", "operator": "Exists"},
    ("router", "tolerations"): lambda i: {"key": f"taint-{i}", "operator": "Exists"},
    ("serving", "env"): lambda i: {"name": f"FUZZ_{i}", "value": str(i)},
    ("serving", "extraArgs"): lambda i: f"--fuzz-{i}",
    ("router", "fallbacks"): lambda i: {"llmService": f"svc-{i}"},
}

WRONG_VALUES: dict[str, list[Any]] = {
    "integer": ["7", 1.5, True, [1], {"n": 1}],
    "number": ["0.5", True, [0.5], {"n": 1}],
    "string": [7, 1.5, True, ["x"], {"s": "x"}],
    "boolean": ["true", 1, [True], {"b": True}],
    "array": ["--x", 3, True, {"a": 1}],
    "object": ["x", 3, True, ["a"]],
    "int-or-string": [True, 1.5, ["1Gi"], {"q": "1Gi"}],
}
PATTERN_BREAKERS = ["Not Valid!", "a b", "-leading-dash", "UPPER/Case..", "1.5.5", "64 GB", "ü", "x::y",
                    "trailing-newline\n", "a//b", "tab\there"]
ENUM_BREAKERS = ["unknown", "VLLM", "none ", "Exists?", "int4", "round-robin", "ReadWriteSometimes"]
UNKNOWN_KEYS = ["maxTokens", "gpuCount", "apiKey", "bogus", "Engine", "fuzz7", "x-extra", "replicas2"]


@dataclass(frozen=True)
class Field:
    path: Path
    schema: dict[str, Any]

    @property
    def kind(self) -> str:
        if self.schema.get("x-kubernetes-int-or-string"):
            return "int-or-string"
        return str(self.schema.get("type"))


@dataclass(frozen=True)
class Fuzzed:
    manifest: dict[str, Any]
    kind: str
    """wrong-type | out-of-range | enum | pattern | unknown-field | required | rule"""
    field: str
    """The field a message must name: spec.serving.env[0].name."""
    base: str

    def describe(self) -> str:
        return f"{self.kind} at {self.field} (base {self.base})"


@cache
def fields() -> list[Field]:
    """Every field of spec (the schema's own properties, list items as [0], map values as .pool)."""
    found: list[Field] = []

    def walk(node: dict[str, Any], path: Path) -> None:
        found.append(Field(path, node))
        if node.get("x-kubernetes-preserve-unknown-fields"):
            return
        for key, child in (node.get("properties") or {}).items():
            walk(child, (*path, key))
        if isinstance(node.get("items"), dict):
            walk(node["items"], (*path, 0))
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], (*path, MAP_KEY))

    walk(openapi_schema()["properties"]["spec"], ())
    return found


def field_name(path: Path) -> str:
    """("serving", "env", 0, "name") -> spec.serving.env[0].name"""
    text = "spec"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _container(spec: dict[str, Any], path: Path, leaf: str | int | None = None) -> Any:
    """The object or list at `path` in `spec` (a list when `leaf`, the key to be set in it, is an index),
    made from the samples where it is missing."""
    node: Any = spec
    full = (*path, leaf)
    for depth, part in enumerate(path):
        if isinstance(part, int):
            if not node:
                node.append(copy.deepcopy(ITEM_SAMPLES[path[:depth]](0)))
            node = node[part]
            continue
        if part not in node or not isinstance(node[part], dict | list):
            sample = OBJECT_SAMPLES.get(path[:depth + 1], {})
            node[part] = [] if isinstance(full[depth + 1], int) else copy.deepcopy(sample)
        node = node[part]
    return node


def put(spec: dict[str, Any], path: Path, value: Any) -> None:
    container = _container(spec, path[:-1], path[-1])
    if isinstance(path[-1], int) and not container:
        container.append(value)
    else:
        container[path[-1]] = value


def _anchored(pattern: str) -> re.Pattern[str]:
    # The CRD's patterns are RE2/ECMAScript, where `$` is the end of the text; Python's `$` also matches
    # before a final newline.
    return re.compile(pattern.replace("$", r"\Z"))


# --- one mutation each --------------------------------------------------------------------------------


def _wrong_type(rnd: random.Random, spec: dict[str, Any]) -> tuple[str, str]:
    field = rnd.choice([f for f in fields() if f.path and f.kind in WRONG_VALUES])
    put(spec, field.path, copy.deepcopy(rnd.choice(WRONG_VALUES[field.kind])))
    return "wrong-type", field_name(field.path)


def _out_of_range_value(rnd: random.Random, field: Field) -> Any:
    s, kind = field.schema, field.kind
    options: list[Callable[[], Any]] = []
    if "minimum" in s:
        low = s["minimum"]
        if kind == "number":
            options.append(lambda: low - rnd.choice([0.5, 1, 1000]) if not s.get("exclusiveMinimum")
                           else low - rnd.choice([0, 0.25, 3]))
        else:
            options.append(lambda: low - 1 - rnd.randint(0, 1000))
    if "maximum" in s:
        high = s["maximum"]
        options.append(lambda: high + rnd.choice([0.5, 1, 1e6]) if kind == "number"
                       else high + 1 + rnd.randint(0, 10**6))
    if s.get("minLength"):
        options.append(lambda: "")
    if "maxLength" in s:
        options.append(lambda: "a" * (s["maxLength"] + 1 + rnd.randint(0, 16)))
    if "maxItems" in s:
        item = ITEM_SAMPLES[field.path]
        options.append(lambda: [item(i) for i in range(s["maxItems"] + 1 + rnd.randint(0, 2))])
    return rnd.choice(options)()


def _out_of_range(rnd: random.Random, spec: dict[str, Any]) -> tuple[str, str]:
    bounded = [f for f in fields() if f.path and (
        any(k in f.schema for k in ("minimum", "maximum", "maxLength", "maxItems")) or f.schema.get("minLength"))]
    field = rnd.choice(bounded)
    put(spec, field.path, _out_of_range_value(rnd, field))
    return "out-of-range", field_name(field.path)


def _bad_enum(rnd: random.Random, spec: dict[str, Any]) -> tuple[str, str]:
    field = rnd.choice([f for f in fields() if "enum" in f.schema])
    value = rnd.choice([v for v in ENUM_BREAKERS if v not in field.schema["enum"]])
    put(spec, field.path, value)
    return "enum", field_name(field.path)


def _bad_pattern(rnd: random.Random, spec: dict[str, Any]) -> tuple[str, str]:
    field = rnd.choice([f for f in fields() if "pattern" in f.schema])
    pattern = _anchored(field.schema["pattern"])
    put(spec, field.path, rnd.choice([v for v in PATTERN_BREAKERS if not pattern.match(v)]))
    return "pattern", field_name(field.path)


def _unknown_field(rnd: random.Random, spec: dict[str, Any]) -> tuple[str, str]:
    objects = [f for f in fields() if f.kind == "object" and "properties" in f.schema]
    field = rnd.choice(objects)
    key = rnd.choice([k for k in UNKNOWN_KEYS if k not in field.schema["properties"]])
    target = _container(spec, field.path) if field.path else spec
    target[key] = rnd.choice([1, "x", True, {"a": 1}])
    return "unknown-field", field_name((*field.path, key))


def _missing_required(rnd: random.Random, spec: dict[str, Any]) -> tuple[str, str]:
    required = [(f.path, key) for f in fields() for key in f.schema.get("required", ())]
    path, key = rnd.choice(required)
    target = _container(spec, path) if path else spec
    target.pop(key, None)
    return "required", field_name((*path, key))


# --- cross-field rules: each returns the spec patch and the field its message names -------------------

Rule = Callable[[random.Random], tuple[dict[str, Any], str]]
ONE_NODE_ENGINES = [e.name for e in ENGINES.values() if not e.capabilities.multi_node]
MULTI_NODE_ENGINES = [e.name for e in ENGINES.values() if e.capabilities.multi_node]
TP_ENGINES = [e.name for e in ENGINES.values() if e.capabilities.tensor_parallel]


def _tp_above_gpus(rnd: random.Random) -> tuple[dict[str, Any], str]:
    gpus = rnd.randint(1, 63)
    return ({"engine": rnd.choice(TP_ENGINES), "resources": {"gpus": gpus, "nodes": 1},
             "serving": {"tensorParallelSize": rnd.randint(gpus + 1, 64)}}, "spec.serving.tensorParallelSize")


def _min_above_max(rnd: random.Random) -> tuple[dict[str, Any], str]:
    low = rnd.randint(2, 1000)
    return ({"autoscaling": {"enabled": rnd.choice([True, False]), "minReplicas": low,
                             "maxReplicas": rnd.randint(1, low - 1)}}, "spec.autoscaling.minReplicas")


def _nodes_on_one_node_engine(rnd: random.Random) -> tuple[dict[str, Any], str]:
    return ({"engine": rnd.choice(ONE_NODE_ENGINES),
             "resources": {"gpus": rnd.randint(1, 8), "nodes": rnd.randint(2, 64)}}, "spec.resources.nodes")


def _nodes_without_gpus(rnd: random.Random) -> tuple[dict[str, Any], str]:
    return {"resources": {"gpus": 0, "nodes": rnd.randint(2, 64)}}, "spec.resources.gpus"


def _tp_not_dividing_group(rnd: random.Random) -> tuple[dict[str, Any], str]:
    gpus, nodes = rnd.randint(1, 8), rnd.randint(2, 8)
    tp = rnd.choice([n for n in range(1, 65) if (gpus * nodes) % n])
    return ({"engine": rnd.choice(MULTI_NODE_ENGINES), "resources": {"gpus": gpus, "nodes": nodes},
             "serving": {"tensorParallelSize": tp}},
            "spec.serving.tensorParallelSize")


def _pipeline_mismatch(rnd: random.Random) -> tuple[dict[str, Any], str]:
    gpus, nodes = rnd.randint(1, 8), rnd.randint(1, 4)
    total = gpus * nodes
    if nodes == 1:  # tp x pp above the Pod's GPUs
        tp = rnd.randint(1, gpus)
        pp = rnd.randint(total // tp + 1, 64)
    else:  # tp divides the group, tp x pp is not the group
        tp = rnd.choice([n for n in range(1, total + 1) if total % n == 0])
        pp = rnd.choice([n for n in range(1, 65) if tp * n != total])
    return ({"engine": rnd.choice(MULTI_NODE_ENGINES), "resources": {"gpus": gpus, "nodes": nodes},
             "serving": {"tensorParallelSize": tp, "pipelineParallelSize": pp}}, "spec.serving.pipelineParallelSize")


def _input_not_below_context(rnd: random.Random) -> tuple[dict[str, Any], str]:
    total = rnd.randint(1, 10**6)
    return ({"engine": "tgi", "quantization": {"method": "none"},
             "serving": {"maxModelLen": total, "maxInputTokens": rnd.randint(total, total + 10**6)}},
            "spec.serving.maxInputTokens")


SETTING_VALUES: dict[str, Callable[[random.Random], Any]] = {
    "maxInputTokens": lambda r: r.randint(1, 10**6),
    "gpuMemoryUtilization": lambda r: r.choice([0.5, 0.9, 1]),
    "enablePrefixCaching": lambda r: True,
    "pipelineParallelSize": lambda r: r.randint(2, 64),
}


def _setting_of_another_engine(rnd: random.Random) -> tuple[dict[str, Any], str]:
    setting = rnd.choice(list(SETTING_VALUES))
    engine = rnd.choice([e.name for e in ENGINES.values() if setting not in e.capabilities.settings])
    return {"engine": engine, "serving": {setting: SETTING_VALUES[setting](rnd)}}, f"spec.serving.{setting}"


def _tp_on_engine_without_it(rnd: random.Random) -> tuple[dict[str, Any], str]:
    engine = rnd.choice([e.name for e in ENGINES.values() if not e.capabilities.tensor_parallel])
    gpus = rnd.randint(2, 64)
    return ({"engine": engine, "resources": {"gpus": gpus, "nodes": 1},
             "serving": {"tensorParallelSize": rnd.randint(2, gpus)}}, "spec.serving.tensorParallelSize")


def _quantization_of_another_engine(rnd: random.Random) -> tuple[dict[str, Any], str]:
    engine = rnd.choice([e for e in ENGINES.values() if len(e.capabilities.quantization) < 6])
    method = rnd.choice([m for m in ("none", "awq", "gptq", "bitsandbytes", "fp8", "gguf")
                         if m not in engine.capabilities.quantization])
    return {"engine": engine.name, "quantization": {"method": method}}, "spec.quantization.method"


def _quantization_details(rnd: random.Random) -> tuple[dict[str, Any], str]:
    which = rnd.choice(["variant", "bits", "bnb-bits"])
    if which == "variant":
        method = rnd.choice(["none", "awq", "gptq", "bitsandbytes", "fp8"])
        return {"quantization": {"method": method, "variant": "Q4_K_M"}}, "spec.quantization.variant"
    if which == "bits":
        method = rnd.choice(["none", "awq", "gptq", "fp8"])
        return {"quantization": {"method": method, "bits": rnd.randint(1, 8)}}, "spec.quantization.bits"
    bits = rnd.choice([1, 2, 3, 5, 6, 7])
    return {"quantization": {"method": "bitsandbytes", "bits": bits}}, "spec.quantization.bits"


def _gpu_fields_on_cpu(rnd: random.Random) -> tuple[dict[str, Any], str]:
    if rnd.choice([True, False]):
        return {"resources": {"gpus": 0, "nodes": 1, "gpuProduct": "NVIDIA-L4"}}, "spec.resources.gpuProduct"
    return {"resources": {"gpus": 0, "nodes": 1, "gpuMemory": rnd.choice(["24Gi", 80 * 2**30])}}, \
        "spec.resources.gpuMemory"


def _fallback_targets(rnd: random.Random) -> tuple[dict[str, Any], str]:
    index = rnd.randint(0, 7)
    good = [{"llmService": f"svc-{i}"} for i in range(index)]
    bad = rnd.choice([
        ({"model": "openai/gpt-4o", "llmService": "other"}, "model"),
        ({"apiBase": "https://api.example.com/v1"}, "model"),
        ({"llmService": "other", "apiKeySecretRef": {"name": "openai", "key": "k"}}, "apiKeySecretRef"),
        ({"llmService": "other", "apiBase": "https://api.example.com/v1"}, "apiKeySecretRef"),
    ])
    return {"router": {"fallbacks": [*good, bad[0]]}}, f"spec.router.fallbacks[{index}].{bad[1]}"


def _shared_cache_mode(rnd: random.Random) -> tuple[dict[str, Any], str]:
    # Always set: patches merge into the base, whose own accessMode (ReadWriteMany in a multi-node base) an
    # absent one would keep.
    storage = {"size": "1Ti", "accessMode": rnd.choice(["ReadWriteOnce", "ReadWriteOncePod"])}
    return ({"engine": rnd.choice(MULTI_NODE_ENGINES), "resources": {"gpus": 8, "nodes": rnd.randint(2, 8)},
             "storage": storage, "serving": {"tensorParallelSize": 8}}, "spec.storage.accessMode")


RULES: list[Rule] = [
    _tp_above_gpus, _min_above_max, _nodes_on_one_node_engine, _nodes_without_gpus, _tp_not_dividing_group,
    _pipeline_mismatch, _input_not_below_context, _setting_of_another_engine, _tp_on_engine_without_it,
    _quantization_of_another_engine, _quantization_details, _gpu_fields_on_cpu, _fallback_targets,
    _shared_cache_mode,
]


def _rule(rnd: random.Random, spec: dict[str, Any]) -> tuple[str, str]:
    # Each patch sets every field its rule reads (lists are replaced whole), so no base can satisfy it.
    patch, field = rnd.choice(RULES)(rnd)
    broken = merged(spec, patch)
    spec.clear()
    spec.update(broken)
    return "rule", field


MUTATIONS: dict[str, Callable[[random.Random, dict[str, Any]], tuple[str, str]]] = {
    "wrong-type": _wrong_type, "out-of-range": _out_of_range, "enum": _bad_enum, "pattern": _bad_pattern,
    "unknown-field": _unknown_field, "required": _missing_required, "rule": _rule,
}


def invalid_document(rnd: random.Random, index: int = 0, mutation: str | None = None) -> Fuzzed:
    """One valid base spec with one thing broken, named `fuzz-<index>`."""
    base = rnd.choice(sorted(BASES))
    spec = copy.deepcopy(BASES[base])
    kind, field = MUTATIONS[mutation or rnd.choice(sorted(MUTATIONS))](rnd, spec)
    return Fuzzed(manifest(f"fuzz-{index}", spec), kind, field, base)


def invalid_documents(seed: int, count: int) -> list[Fuzzed]:
    """`count` documents from a seeded generator: the same list on every run."""
    rnd = random.Random(seed)
    return [invalid_document(rnd, index) for index in range(count)]


def snake_case_document(rnd: random.Random, index: int = 0) -> Fuzzed:
    """A camelCase field spelled in snake_case (max_model_len): not a field of the CRD."""
    spelled = rnd.choice([
        (("serving",), "max_model_len", 4096), (("model",), "served_name", "x"),
        (("resources",), "gpu_product", "NVIDIA-L4"), (("autoscaling",), "min_replicas", 2),
        (("router",), "num_retries", 3), ((), "image_pull_secrets", []),
    ])
    path, key, value = spelled
    spec = copy.deepcopy(BASE_SPEC)
    (_container(spec, path) if path else spec)[key] = value
    return Fuzzed(manifest(f"snake-{index}", spec), "unknown-field", field_name((*path, key)), "base")


# --- documents the CRD accepts and the operator refuses (Stalled=True, nothing deployed) ----------------

GPU_PRODUCTS = ["NVIDIA-L4", "NVIDIA-A10G", "NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-40GB"]


def operator_refused_document(rnd: random.Random, index: int = 0) -> Fuzzed:
    """A valid spec the operator refuses: an extraArgs flag the operator manages (`--port=9000`), or a
    model that cannot fit its GPUs. `field` is spec.serving.extraArgs, or "" for the fit check."""
    if rnd.choice([True, False]):
        engine = rnd.choice([e for e in ENGINES.values() if e.managed_flags])
        flag = rnd.choice(sorted(engine.managed_flags))
        args = [f"{flag}={rnd.randint(1, 65535)}"] if rnd.choice([True, False]) else [flag, "x"]
        spec = merged(BASE_SPEC, {"engine": engine.name, "serving": {"extraArgs": ["--disable-log-stats", *args]}})
        return Fuzzed(manifest(f"refused-{index}", spec), "managed-flag", "spec.serving.extraArgs", "base")
    spec = merged(BASE_SPEC, {"model": {"parameters": f"{rnd.randint(300, 5000)}B"},
                              "resources": {"gpus": rnd.randint(1, 4), "gpuProduct": rnd.choice(GPU_PRODUCTS)}})
    return Fuzzed(manifest(f"refused-{index}", spec), "no-fit", "", "base")


def operator_refused_documents(seed: int, count: int) -> list[Fuzzed]:
    rnd = random.Random(seed)
    return [operator_refused_document(rnd, index) for index in range(count)]
