"""spec.autoscaling -> PolicyConfig: which targets apply depends on what the engine exports."""

from __future__ import annotations

from llm_operator.api.models import LLMServiceSpec
from llm_operator.autoscale.policy import PolicyConfig
from llm_operator.engines import ENGINES


def policy_config(spec: LLMServiceSpec) -> PolicyConfig:
    scaling = spec.autoscaling
    metrics = ENGINES[spec.engine].metrics
    return PolicyConfig(
        min_replicas=scaling.min_replicas,
        max_replicas=scaling.max_replicas,
        target_queue_depth=float(scaling.target_queue_depth),
        # DCGM reports per GPU; CPU-only replicas have none.
        target_gpu_utilization=float(scaling.target_gpu_utilization) if spec.resources.gpus > 0 else None,
        # Only some engines export KV-cache use (vLLM, SGLang).
        target_kv_cache_usage=float(scaling.target_kv_cache_usage) if metrics.kv_cache else None,
        scale_up_stabilization_s=float(scaling.scale_up_stabilization_seconds),
        scale_down_delay_s=float(scaling.scale_down_delay_seconds),
        # The prompt-rate peak window stays at the policy's tuned 900 s; scaleDownDelaySeconds alone sets
        # how much longer capacity outlives demand (bench/README.md: 900 s for bursty traffic).
        # Opt-in: a replica's prefill rate depends on the model and GPU. Ollama exports no counter.
        # Needs the engine's TTFT histogram and a way to tell prefill from queueing.
        target_ttft_s=(
            float(scaling.target_time_to_first_token_seconds) or None
            if metrics.first_token_seconds and (metrics.prefill_seconds or metrics.queue_seconds) else None
        ),
        prompt_tokens_per_s_per_replica=(
            None if not metrics.prompt_tokens or scaling.target_prompt_tokens_per_second is None
            else float(scaling.target_prompt_tokens_per_second)
        ),
    )
