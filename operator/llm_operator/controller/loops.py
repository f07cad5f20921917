"""The operator's own periodic loops (not kopf timers: kopf puts a finalizer on every object that has a
timer or daemon, and a finalizer would hang deletion while the operator is down)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from llm_operator import kube
from llm_operator.controller import registry

_log = logging.getLogger("llm_operator")


class Loop(threading.Thread):
    """Calls `fn(body)` for every known LLMService every `interval` seconds, in one thread."""

    def __init__(self, name: str, interval: float, fn: Callable[[dict], None], wanted: Callable[[dict], bool]):
        super().__init__(name=name, daemon=True)
        self.interval, self.fn, self.wanted = interval, fn, wanted
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            for body in list(registry.known.values()):
                if body["metadata"].get("deletionTimestamp") or not self.wanted(body):
                    continue
                try:
                    self.fn(body)
                except Exception:  # one object's failure must not stop the others' loop
                    if not _forgotten_if_gone(body):
                        _log.exception(f"{self.name} of {body['metadata']['namespace']}/{body['metadata']['name']}")


def _forgotten_if_gone(body: dict) -> bool:
    """Whether the LLMService no longer exists, in which case it is forgotten. Its DELETED event can be missed:
    kopf stops the watch of a namespace that is being deleted, and without this the loops would keep calling
    the apiserver (404) for its LLMServices every interval until the operator restarted."""
    meta = body["metadata"]
    try:
        live = kube.get_llmservice(meta["namespace"], meta["name"])
    except Exception:  # the apiserver is unreachable: nothing to conclude
        return False
    if live is not None and live["metadata"].get("uid") == meta.get("uid"):
        return False
    registry.forget(meta["namespace"], meta["name"], meta.get("uid", ""))
    _log.info(f"forgot {meta['namespace']}/{meta['name']}: it was deleted")
    return True
