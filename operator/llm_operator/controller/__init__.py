"""The operator's shell around the pure core; handlers.py only registers kopf handlers that call it.

- reconcile.py: read what a plan needs, build it (plan.py), apply it when it changed, write status;
- autoscaling.py: one autoscaling tick (Prometheus sample, the pure policy, the decision recorded);
- status.py: observe, status (written only when it changed) and Events (one Warning per message);
- state.py / registry.py: what is remembered per LLMService uid, and the watch's latest bodies;
- loops.py: the resync and autoscaling loops; settings.py: what `llm-operator run` passes in.
"""
