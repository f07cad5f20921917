"""What every engine module returns: the engine-specific half of the Pod.

An engine decides its image, arguments, environment, port, health path, where it keeps
weights and how much it can be locked down. The resource builders add everything that is
the same for all engines (labels, GPUs, scheduling, volumes, probes' timings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llm_operator.api.models import LLMService, SecretKeyRef

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
