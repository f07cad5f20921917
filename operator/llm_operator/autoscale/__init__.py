"""Autoscaling: the pure policy (`policy`) and, in the operator, the Prometheus queries that feed it."""

from llm_operator.autoscale.policy import Decision, PolicyConfig, Sample, ScalerState, decide

__all__ = ["Decision", "PolicyConfig", "Sample", "ScalerState", "decide"]
