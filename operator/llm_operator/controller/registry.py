"""The operator process's memory: per-uid state, and the watch's latest body of every LLMService."""

from __future__ import annotations

from llm_operator import metrics
from llm_operator.api.models import LLMService
from llm_operator.controller.due import DueQueue
from llm_operator.controller.state import States
from llm_operator.plan import parse

# What is remembered per LLMService, by uid (controller/state.py).
states = States()
# The latest body of every LLMService by (namespace, name): the watch's view, for the loops, for
# children's owner lookups and for Pod events (which name their LLMService by label).
known: dict[tuple[str, str], dict] = {}
# What the children's events ask of their LLMServices, one entry per LLMService (controller/due.py).
due = DueQueue()


def service_of(body: dict) -> LLMService | None:
    """The spec of `body` as the pydantic model (the one way the controller reads a spec), parsed once per
    uid and generation; None when the spec is invalid (reconcile reports why)."""
    meta = body.get("metadata", {})
    generation = meta.get("generation", 0)
    state = states.of(meta.get("uid", ""))
    if state.parsed is None or state.parsed[0] != generation:
        state.parsed = (generation, parse(body)[0])
    return state.parsed[1]


def forget(namespace: str, name: str, uid: str) -> None:
    """Drop everything remembered of a deleted LLMService: its body, its state and its metric series. An
    object created again under the same name (another uid) since then is kept."""
    current = known.get((namespace, name))
    if current is not None and current.get("metadata", {}).get("uid", uid) != uid:
        states.drop(uid)
        return
    known.pop((namespace, name), None)
    states.drop(uid)
    metrics.forget(namespace, name)
