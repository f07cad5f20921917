"""Ollama: settings as environment variables and the model pulled by an init container."""

from __future__ import annotations

import pytest

from llm_operator.engines import container_for, ollama
from llm_operator.plan import make_plan
from unit.factories import env_by_name, make_service, manifest


def test_context_length_and_parallelism_are_env() -> None:
    engine = container_for(make_service("ollama", {"serving": {"maxModelLen": 16384, "maxConcurrentRequests": 2}}))
    env = env_by_name(engine.env)
    assert env["OLLAMA_CONTEXT_LENGTH"] == {"name": "OLLAMA_CONTEXT_LENGTH", "value": "16384"}
    assert env["OLLAMA_NUM_PARALLEL"] == {"name": "OLLAMA_NUM_PARALLEL", "value": "2"}
    assert env["OLLAMA_HOST"]["value"] == "0.0.0.0:11434"
    assert env["OLLAMA_MODELS"]["value"].startswith("/ollama")


def test_unset_settings_are_not_in_env() -> None:
    env = env_by_name(container_for(make_service("ollama")).env)
    assert "OLLAMA_CONTEXT_LENGTH" not in env
    assert "OLLAMA_NUM_PARALLEL" not in env


def test_no_hf_token_for_ollama() -> None:
    engine = container_for(make_service("ollama", {"model": {"tokenSecretRef": {"name": "hf", "key": "token"}}}))
    assert "HF_TOKEN" not in env_by_name(engine.env)


def test_server_command_and_extra_args() -> None:
    engine = container_for(make_service("ollama", {"serving": {"extraArgs": ["--verbose"]}}))
    assert engine.command == ["/bin/ollama"]
    assert engine.args == ["serve", "--verbose"]
    assert engine.port == 11434
    assert engine.health_path == "/"
    assert engine.metrics_path is None
    assert engine.cache_mount_path == "/ollama"
    assert engine.shm_size_limit is None


@pytest.mark.parametrize(
    ("name", "quantization", "tag"),
    [
        ("qwen2.5:7b-instruct", {"method": "none"}, "qwen2.5:7b-instruct"),
        ("qwen2.5", {"method": "none"}, "qwen2.5"),
        ("qwen2.5", {"method": "gguf", "variant": "Q4_K_M"}, "qwen2.5:Q4_K_M"),
        ("hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF", {"method": "gguf", "variant": "Q8_0"},
         "hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q8_0"),
        ("qwen2.5:7b-instruct-q4_K_M", {"method": "gguf", "variant": "Q4_K_M"}, "qwen2.5:7b-instruct-q4_K_M"),
        ("qwen2.5:7b", {"method": "gguf", "variant": "Q5_K_M"}, "qwen2.5:7b"),
        ("qwen2.5", {"method": "gguf"}, "qwen2.5"),
        # a registry with a port: the colon is in the host, not in the tag
        ("registry.local:5000/library/qwen2.5", {"method": "gguf", "variant": "Q4_0"},
         "registry.local:5000/library/qwen2.5:Q4_0"),
        ("registry.local:5000/library/qwen2.5:7b", {"method": "gguf", "variant": "Q4_0"},
         "registry.local:5000/library/qwen2.5:7b"),
    ],
)
def test_model_tag(name: str, quantization: dict, tag: str) -> None:
    service = make_service("ollama", {"model": {"name": name}, "quantization": quantization})
    assert ollama.model_tag(service) == tag


def test_pull_init_container() -> None:
    service = make_service("ollama", {"model": {"name": "qwen2.5"}, "quantization": {"method": "gguf",
                                                                                     "variant": "Q4_K_M"},
                                      "serving": {"maxModelLen": 8192}})
    engine = container_for(service)
    (pull,) = engine.init_containers
    assert pull["name"] == "pull-model"
    assert pull["image"] == engine.image
    env = env_by_name(pull["env"])
    assert env["OLLAMA_PULL_MODEL"]["value"] == "qwen2.5:Q4_K_M"
    # the private server only listens on loopback
    assert env["OLLAMA_HOST"]["value"] == "127.0.0.1:11434"
    # the same model directory as the server, so the server finds what was pulled
    assert env["OLLAMA_MODELS"] == env_by_name(engine.env)["OLLAMA_MODELS"]
    assert env["OLLAMA_CONTEXT_LENGTH"]["value"] == "8192"
    assert pull["volumeMounts"] == [{"name": "model-cache", "mountPath": "/ollama"}]
    script = pull["command"][-1]
    assert 'ollama pull "$OLLAMA_PULL_MODEL"' in script
    # a restarted Pod with the cache on a PVC does not download again
    assert script.index('ollama show "$OLLAMA_PULL_MODEL"') < script.index("ollama pull")


def test_pull_uses_the_overridden_image() -> None:
    engine = container_for(make_service("ollama", {"image": "ollama/ollama:0.6.0-rocm"}))
    assert engine.image == "ollama/ollama:0.6.0-rocm"
    assert engine.init_containers[0]["image"] == "ollama/ollama:0.6.0-rocm"


def test_pull_env_does_not_share_dicts_with_the_server() -> None:
    engine = container_for(make_service("ollama", {"serving": {"maxModelLen": 8192}}))
    server_ids = {id(e) for e in engine.env}
    assert not any(id(e) in server_ids for e in engine.init_containers[0]["env"])


def test_user_env_reaches_server_and_pull() -> None:
    engine = container_for(make_service("ollama", {"serving": {"env": [{"name": "HTTPS_PROXY",
                                                                        "value": "http://proxy:3128"}]}}))
    assert env_by_name(engine.env)["HTTPS_PROXY"]["value"] == "http://proxy:3128"
    assert env_by_name(engine.init_containers[0]["env"])["HTTPS_PROXY"]["value"] == "http://proxy:3128"


def test_image_is_pinned() -> None:
    assert ollama.IMAGE.startswith("ollama/ollama:")
    assert not ollama.IMAGE.endswith(":latest")


@pytest.mark.parametrize("method", ["awq", "gptq", "fp8", "bitsandbytes"])
def test_non_gguf_quantization_is_rejected(method: str) -> None:
    plan = make_plan(manifest("ollama", {"quantization": {"method": method}}), uid=None)
    assert plan.objects == []
    assert any("spec.quantization.method" in p and "ollama" in p for p in plan.problems)


@pytest.mark.parametrize(
    ("serving", "field"),
    [({"maxInputTokens": 100}, "maxInputTokens"), ({"gpuMemoryUtilization": 0.5}, "gpuMemoryUtilization"),
     ({"enablePrefixCaching": True}, "enablePrefixCaching"), ({"tensorParallelSize": 2}, "tensorParallelSize")],
)
def test_other_engines_settings_are_rejected(serving: dict, field: str) -> None:
    plan = make_plan(manifest("ollama", {"resources": {"gpus": 2}, "serving": serving}), uid=None)
    assert plan.objects == []
    assert any(f"spec.serving.{field}" in p for p in plan.problems)
