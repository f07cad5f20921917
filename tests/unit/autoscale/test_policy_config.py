"""spec.autoscaling -> PolicyConfig: which signals apply to which engine."""

from __future__ import annotations

from llm_operator.autoscale.config import policy_config
from unit.factories import make_service


def config_for(engine: str, **autoscaling: object):
    patch = {"autoscaling": {"enabled": True, **autoscaling}}
    if engine == "ollama":
        patch["model"] = {"name": "qwen2.5:7b"}
    return policy_config(make_service(engine, patch).spec)


def test_targets_and_bounds_come_from_the_spec() -> None:
    config = config_for("vllm", minReplicas=0, maxReplicas=7, targetQueueDepth=3, scaleDownDelaySeconds=120,
                        scaleUpStabilizationSeconds=30, targetKVCacheUsage=0.7, targetGPUUtilization=65)
    assert (config.min_replicas, config.max_replicas, config.target_queue_depth) == (0, 7, 3.0)
    assert (config.scale_down_delay_s, config.scale_up_stabilization_s) == (120.0, 30.0)
    assert (config.target_kv_cache_usage, config.target_gpu_utilization) == (0.7, 65.0)
    # The peak window is the policy's own, not tied to the delay.
    assert config.prompt_rate_peak_window_s == 900.0


def test_kv_cache_target_only_for_vllm() -> None:
    assert config_for("vllm").target_kv_cache_usage == 0.8
    assert config_for("tgi").target_kv_cache_usage is None
    assert config_for("ollama").target_kv_cache_usage is None


def test_prompt_rate_signal_is_opt_in_and_never_for_ollama() -> None:
    assert config_for("vllm").prompt_tokens_per_s_per_replica is None
    assert config_for("tgi", targetPromptTokensPerSecond=9000).prompt_tokens_per_s_per_replica == 9000.0
    assert config_for("ollama", targetPromptTokensPerSecond=9000).prompt_tokens_per_s_per_replica is None


def test_no_gpu_utilization_target_on_cpu() -> None:
    cpu = policy_config(make_service("vllm", {"resources": {"gpus": 0}, "autoscaling": {"enabled": True}}).spec)
    assert cpu.target_gpu_utilization is None
