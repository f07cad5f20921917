"""Ollama (`ollama serve`): settings are environment variables, see
https://github.com/ollama/ollama/blob/main/envconfig/config.go.

Pulling the model: an init container starts a private `ollama serve` on loopback, pulls the
tag into the model cache unless `ollama show` already finds it there, and stops. We chose an
init container over a wrapper command or a postStart hook because
- the Pod cannot become Ready, or even start the server, before the model is on disk, so the
  router never sends a request that would trigger a slow implicit pull;
- a failed pull is a failed init container with its own logs and restart back-off, instead
  of a server that is up but useless;
- with a PersistentVolumeClaim the check finds the model and skips the download when a Pod
  restarts; with an emptyDir the container restarts (not Pod restarts) keep it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llm_operator.engines.base import MODEL_CACHE_VOLUME, Capabilities, Engine, EngineContainer, user_env
from llm_operator.fit import ollama_tag_variant

if TYPE_CHECKING:
    from llm_operator.api.models import LLMService, LLMServiceSpec

IMAGE = "ollama/ollama:0.17.4"
PORT = 11434
CACHE_PATH = "/ollama"

PULL_SCRIPT = """\
set -eu
ollama serve >/tmp/ollama-pull-server.log 2>&1 &
server=$!
for _ in $(seq 1 120); do ollama list >/dev/null 2>&1 && break; sleep 1; done
if ollama show "$OLLAMA_PULL_MODEL" >/dev/null 2>&1; then
  echo "model $OLLAMA_PULL_MODEL is already in the cache; not downloading it again"
else
  echo "pulling $OLLAMA_PULL_MODEL"
  ollama pull "$OLLAMA_PULL_MODEL"
fi
kill "$server"
wait "$server" 2>/dev/null || true
"""


def model_tag(service: LLMService) -> str:
    """The tag to pull: model.name, plus `:<variant>` for gguf when the name has no tag."""
    name = service.spec.model.name
    variant = service.spec.quantization.variant
    if service.spec.quantization.method == "gguf" and variant and ":" not in name.rsplit("/", 1)[-1]:
        return f"{name}:{variant}"
    return name


def server_env(service: LLMService) -> list[dict]:
    serving = service.spec.serving
    env = [
        {"name": "OLLAMA_HOST", "value": f"0.0.0.0:{PORT}"},
        {"name": "OLLAMA_MODELS", "value": f"{CACHE_PATH}/models"},
        {"name": "HOME", "value": CACHE_PATH},
        # The model stays loaded: a serving replica should not unload it after 5 idle minutes.
        {"name": "OLLAMA_KEEP_ALIVE", "value": "-1"},
    ]
    if serving.max_model_len is not None:
        env.append({"name": "OLLAMA_CONTEXT_LENGTH", "value": str(serving.max_model_len)})
    if serving.max_concurrent_requests is not None:
        env.append({"name": "OLLAMA_NUM_PARALLEL", "value": str(serving.max_concurrent_requests)})
    return env


def container(service: LLMService) -> EngineContainer:
    env = [*server_env(service), *user_env(service)]
    pull = {
        "name": "pull-model",
        "image": service.spec.image or IMAGE,
        "command": ["/bin/sh", "-c", PULL_SCRIPT],
        # The private server listens on loopback only; env names must stay unique for
        # server-side apply, so OLLAMA_HOST is replaced rather than appended.
        "env": [
            # Copies: the same dict in two containers would render as YAML anchors and aliases.
            *({**e} for e in env if e["name"] != "OLLAMA_HOST"),
            {"name": "OLLAMA_HOST", "value": f"127.0.0.1:{PORT}"},
            {"name": "OLLAMA_PULL_MODEL", "value": model_tag(service)},
        ],
        "volumeMounts": [{"name": MODEL_CACHE_VOLUME, "mountPath": CACHE_PATH}],
    }
    return EngineContainer(
        image=service.spec.image or IMAGE,
        command=["/bin/ollama"],
        args=["serve", *service.spec.serving.extra_args],
        env=env,
        port=PORT,
        health_path="/",
        cache_mount_path=CACHE_PATH,
        metrics_path=None,
        init_containers=[pull],
    )


def weights_for_fit(spec: LLMServiceSpec) -> tuple[str, str | None]:
    """Ollama serves GGUF only: "none" means the tag's own quantization (q4_K_M in `:7b-q4_K_M`),
    not 16-bit weights."""
    method, variant = spec.quantization.method, spec.quantization.variant
    if method in ("none", "gguf") and not variant:
        return "gguf", ollama_tag_variant(spec.model.name)
    return method, variant


ENGINE = Engine(
    name="ollama",
    title="Ollama",
    image=IMAGE,
    service_port=PORT,
    container=container,
    upstream_model=model_tag,
    managed_flags={},  # settings are environment variables; `serve` takes no flags
    field_docs={
        "model.name": "a tag (qwen2.5:7b-instruct-q4_K_M), pulled with `ollama pull` before the Pod is Ready",
        "model.servedName": "the router's alias", "model.revision": "ignored",
        "model.tokenSecretRef": "not used (tags come from the Ollama registry)",
        "quantization.method": "none (the tag's own quantization) or gguf only",
        "serving.maxModelLen": "OLLAMA_CONTEXT_LENGTH", "serving.tensorParallelSize": "only 1",
        "serving.maxConcurrentRequests": "OLLAMA_NUM_PARALLEL",
    },
    # No Prometheus metrics: the router's in-flight gauge stands in for the queue.
    capabilities=Capabilities(
        quantization=("none", "gguf"),
        quantization_note="Ollama serves GGUF models only (none: the tag's own quantization)",
        tensor_parallel=False,
    ),
    weights_for_fit=weights_for_fit,
)
