"""The operator's settings that `llm-operator run` passes through the environment."""

from __future__ import annotations

import functools
import os

from llm_operator.defaults import OperatorDefaults, defaults_from_env

# A resync applies an unchanged plan again only this often: hand edits of watched children arrive
# as events, and this catches what is not watched (the generated Secret) and any missed event. Each
# costs about 7 requests per LLMService (6 applies and a Secret check), so this interval sets the
# operator's cost at rest: 0.23 requests per LLMService per minute at 30 minutes (1.4 at 5 minutes,
# over the goal of 1 that bench/operator_scale measures).
FULL_APPLY_SECONDS = 1800.0


def resync_interval() -> float:
    return float(os.environ.get("LLMOP_RESYNC_INTERVAL", "30"))


def autoscale_interval() -> float:
    return float(os.environ.get("LLMOP_AUTOSCALE_INTERVAL", "15"))


@functools.cache


def operator_defaults() -> OperatorDefaults:
    """Images and pull secrets set by `llm-operator run` flags, which pass them in the environment."""
    return defaults_from_env(os.environ)


def prometheus_url() -> str:
    return os.environ.get("LLMOP_PROMETHEUS_URL", "http://prometheus-operated.monitoring.svc:9090")
