"""The model's parameter count for the fit check when spec.model.parameters is unset: read from the Hugging
Face Hub (llm_operator.hub) once, and recorded in status.modelSize, so neither a resync nor an operator
restart reads it again. The record names the model and revision it counts: a spec that changes either is
read anew.

The Hub token is the model's own (spec.model.tokenSecretRef): read from the Secret when the request is
made, sent to the Hub only, never kept, logged or written anywhere. A Hub that cannot be read is asked
again after RETRY_SECONDS; until then the fit check is skipped and ModelFits=Unknown says why.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from llm_operator import hub, kube
from llm_operator.api.models import LLMService
from llm_operator.controller import registry
from llm_operator.fit import FitResult
from llm_operator.plan import fit_input

_log = logging.getLogger("llm_operator")

STATUS_FIELD = "modelSize"
RETRY_SECONDS = 600.0
REQUEST_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Lookup:
    parameters: float | None = None
    """The count to check the fit with; None: none known."""
    record: dict[str, Any] | None = None
    """status.modelSize to write (a count just read), else None."""
    problem: str | None = None
    """Why the Hub gave no count, for ModelFits=Unknown."""


def _revision(service: LLMService) -> str:
    return service.spec.model.revision or hub.DEFAULT_REVISION


def recorded(body: dict, service: LLMService) -> float | None:
    """The count status.modelSize holds for this spec's model and revision, else None."""
    entry = (body.get("status") or {}).get(STATUS_FIELD) or {}
    if entry.get("model") == service.spec.model.name and entry.get("revision") == _revision(service):
        count = entry.get("parameters")
        return float(count) if isinstance(count, int | float) and count > 0 else None
    return None


def needed(service: LLMService) -> bool:
    return hub.fit_needs_hub(fit_input(service.spec), service.spec.model.name)


def lookup(body: dict, service: LLMService | None) -> Lookup:
    """The count for the fit check of `body`: the spec's own (nothing to do), the one recorded in status, or
    one read from the Hub now."""
    if service is None or not needed(service):
        return Lookup()
    known = recorded(body, service)
    if known is not None:
        return Lookup(parameters=known)
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return Lookup(problem="the operator runs with HF_HUB_OFFLINE set")
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    # Kept with the object's other state (its uid's, under its reconcile lock): a spec naming another model or
    # revision, or a re-created object, asks the Hub at once.
    state = registry.states.of(body["metadata"]["uid"])
    asked = (service.spec.model.name, _revision(service))
    failed = state.hub_failure
    if failed is not None and failed[0] == asked and time.monotonic() - failed[1] < RETRY_SECONDS:
        return Lookup(problem=failed[2])
    try:
        size = hub.fetch_model_size(service.spec.model.name, service.spec.model.revision,
                                    _token(namespace, service), timeout=REQUEST_TIMEOUT_SECONDS)
    except hub.HubError as error:
        message = str(error)
        state.hub_failure = (asked, time.monotonic(), message)
        _log.info(f"{namespace}/{name}: no parameter count from the Hub: {message}")
        return Lookup(problem=message)
    state.hub_failure = None
    return Lookup(parameters=float(size.parameters), record=status_record(service, size))


def _token(namespace: str, service: LLMService) -> str | None:
    """The model's Hub token from its Secret, or None (no reference, or no such Secret or key: the engine's
    SecretsFound condition reports those)."""
    ref = service.spec.model.token_secret_ref
    if ref is None:
        return None
    secret = kube.get("v1", "Secret", namespace, ref.name)
    value = ((secret or {}).get("data") or {}).get(ref.key)
    return base64.b64decode(value).decode(errors="replace") if value else None


def status_record(service: LLMService, size: hub.ModelSize) -> dict[str, Any]:
    record: dict[str, Any] = {
        "model": service.spec.model.name,
        "revision": size.revision,
        "parameters": size.parameters,
        "source": f"{hub.hub_endpoint()} {size.source}",
    }
    if size.dtype:
        record["dtype"] = size.dtype
    if size.commit:
        record["commit"] = size.commit
    return record


def explain_unknown(fit: FitResult | None, found: Lookup) -> FitResult | None:
    """ModelFits=Unknown that says why the Hub gave no count, instead of only asking for the field."""
    if fit is None or fit.status != "Unknown" or found.problem is None:
        return fit
    return FitResult("Unknown", "ParametersUnknown",
                     f"fit not checked: spec.model.parameters is unset and the Hugging Face Hub gave no count "
                     f"({found.problem}); set spec.model.parameters (e.g. 8B) to enable the check")
