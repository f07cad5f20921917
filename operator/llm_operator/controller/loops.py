"""The operator's own periodic loops (not kopf timers: kopf puts a finalizer on every object that has a
timer or daemon, and a finalizer would hang deletion while the operator is down)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

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
                    _log.exception(f"{self.name} of {body['metadata']['namespace']}/{body['metadata']['name']}")
