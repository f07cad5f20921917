"""The operator process's memory: per-uid state, and the watch's latest body of every LLMService."""

from __future__ import annotations

from llm_operator.controller.state import States

# What is remembered per LLMService, by uid (controller/state.py).
states = States()
# The latest body of every LLMService by (namespace, name): the watch's view, for the loops, for
# children's owner lookups and for Pod events (which name their LLMService by label).
known: dict[tuple[str, str], dict] = {}
