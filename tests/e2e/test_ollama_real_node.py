"""Ollama for real: the operator's generated Ollama Pod, its pull-model init container included, serves
a tiny GGUF model on the testbed's real node, through the generated LiteLLM router.

Which image stands in for which: Ollama 0.17.4 built from the Go module proxy (hack/install-ollama.sh,
CPU only; localhost/llm-operator-test/ollama) for ollama/ollama:0.17.4, and LiteLLM 1.108.7 from the
hash-pinned lock (localhost/llm-operator-test/litellm) for ghcr.io/berriai/litellm-non_root:v1.108.7.
The model is a tiny llama-architecture GGUF with random weights (tests/support/tiny_gguf.py), laid out
in the model-cache volume as `ollama create` would: the init container's `ollama show` finds it and
skips the pull (nothing may leave the machine), as it does for any model a platform team pre-seeds."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
import yaml

from e2e.test_serving_real_node import ON_REAL_NODE, engine_pods, router_client, wait_ready
from support.cluster import OperatorProcess
from support.real_node import host_volume, local_image
from support.tiny_gguf import seed_ollama_models


def test_generated_ollama_pod_serves_a_seeded_gguf_through_the_router(
    operator: OperatorProcess, real_node: str, namespace: str, images: dict[str, str], tmp_path: Path,
    volumes: list[str],
) -> None:
    cluster = operator.cluster
    image = local_image("ollama")
    root = tmp_path / "ollama-cache"
    seed_ollama_models(root / "models", "tiny:latest")  # OLLAMA_MODELS is <cache>/models
    volumes.append(host_volume(cluster, namespace, "tiny-model-cache", root))
    body = {
        "apiVersion": "serving.llm-operator.io/v1alpha1", "kind": "LLMService", "metadata": {"name": "tiny"},
        "spec": {
            "engine": "ollama", "image": image, "model": {"name": "tiny"},
            "resources": {"gpus": 0, "cpu": "500m", "memory": "1Gi", **ON_REAL_NODE},
            "storage": {"size": "1Gi"},
            "serving": {"maxModelLen": 512, "maxConcurrentRequests": 2},
            "router": {"image": images["router"], **ON_REAL_NODE},
        },
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))
    wait_ready(cluster, namespace, "tiny", timeout=300)

    # The Pod runs what the operator generated, init container included, and found the seeded model.
    deployment = cluster.get_json("deployment", "tiny", namespace)
    [pod] = engine_pods(cluster, namespace, "tiny")
    assert pod["spec"]["nodeName"] == real_node
    template = deployment["spec"]["template"]["spec"]
    for generated, running in ((template["initContainers"], pod["spec"]["initContainers"]),
                               (template["containers"], pod["spec"]["containers"])):
        for key in ("image", "command", "args", "env", "volumeMounts", "securityContext",
                    "startupProbe", "readinessProbe", "livenessProbe"):
            assert [c.get(key) for c in running] == [c.get(key) for c in generated], key
    assert pod["spec"]["containers"][0]["command"] == ["/bin/ollama"]
    [pull] = pod["status"]["initContainerStatuses"]
    assert pull["state"]["terminated"]["exitCode"] == 0
    pull_log = cluster.kubectl("logs", "-n", namespace, pod["metadata"]["name"], "-c", "pull-model").stdout
    assert "model tiny is already in the cache; not downloading it again" in pull_log, pull_log

    # Chat and a streamed chat through the router's Service.
    client = router_client(cluster, namespace, "tiny")
    reply = client.chat.completions.create(model="tiny", max_tokens=8,
                                           messages=[{"role": "user", "content": "hello"}])
    print("ollama via the router:", json.dumps(reply.model_dump(), default=str)[:400])
    assert reply.choices[0].message.content is not None
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 8
    chunks = list(client.chat.completions.create(
        model="tiny", max_tokens=8, stream=True, messages=[{"role": "user", "content": "hello"}]))
    assert len(chunks) > 1
    # LiteLLM without a database answers 400 "No connected db" for a key that is not the master key.
    wrong_key = openai.OpenAI(base_url=client.base_url, api_key="wrong", max_retries=0, timeout=30)
    with pytest.raises((openai.AuthenticationError, openai.BadRequestError)):
        wrong_key.chat.completions.create(model="tiny", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
