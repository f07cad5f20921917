"""Times until objects first reach a state, read from one watch stream (not polling: a `kubectl get` of 1000
LLMServices every half second would cost the 2 cores more than the operator does)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

Body = Mapping[str, Any]


def is_ready(llmservice: Body) -> bool:
    """The operator's Ready condition is True."""
    conditions = (llmservice.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def is_available(deployment: Body) -> bool:
    """All wanted replicas of the current generation are available (kwok reports the Pods Running and
    Ready): what the operator's Ready means for one Deployment."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    wanted = spec.get("replicas", 1)
    return (status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
            and (status.get("availableReplicas") or 0) >= max(1, wanted))


def instance_ready_times(first_available: Mapping[str, float], instance_of: Mapping[str, str],
                         deployments_per_instance: int) -> dict[str, float]:
    """When each instance (LLMService) had all its Deployments available: the latest of their times.
    An instance with fewer available Deployments than it has is left out."""
    times: dict[str, list[float]] = {}
    for deployment, at in first_available.items():
        times.setdefault(instance_of[deployment], []).append(at)
    return {name: max(ts) for name, ts in times.items() if len(ts) >= deployments_per_instance}


class FirstTimes:
    """Watches one namespaced list in a thread and keeps, per object name, the first time (seconds since
    `started`) `predicate` held. Started before the burst so that no event is missed."""

    def __init__(self, list_fn: Callable[..., Any], list_args: tuple, predicate: Callable[[Body], bool],
                 timeout_s: float) -> None:
        self.times: dict[str, float] = {}
        self.labels: dict[str, dict[str, str]] = {}
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._args = (list_fn, list_args, predicate, timeout_s)
        self._thread = threading.Thread(target=self._run, daemon=True, name="first-times")
        self._thread.start()

    def restart_clock(self) -> None:
        self.started = time.monotonic()

    def _run(self) -> None:
        list_fn, list_args, predicate, timeout_s = self._args
        deadline = time.monotonic() + timeout_s
        # Bounded: a watch the apiserver closes (its timeout, a 410) is opened again until the deadline.
        for _ in range(1000):
            left = deadline - time.monotonic()
            if left <= 0 or self._stop.is_set():
                return
            try:
                stream = watch.Watch().stream(list_fn, *list_args, deserialize=False,
                                              timeout_seconds=int(min(left, 300)) + 1)
                for event in stream:  # not deserialized: {"type": ..., "object": {...}}
                    self._see(event["object"], predicate)
                    if self._stop.is_set():
                        return
            except ApiException as error:
                if error.status != 410:
                    raise
            except KeyError:  # the client reads an ERROR event (an expired watch) as if deserialized
                pass
            time.sleep(0.2)

    def _see(self, obj: Body, predicate: Callable[[Body], bool]) -> None:
        name = obj["metadata"]["name"]
        self.labels[name] = obj["metadata"].get("labels") or {}
        if name not in self.times and predicate(obj):
            self.times[name] = time.monotonic() - self.started

    def wait(self, count: int, timeout_s: float) -> bool:
        """Until `count` objects reached the state (polled every 0.2 s, at most `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        while len(self.times) < count and time.monotonic() < deadline:
            time.sleep(0.2)
        return len(self.times) >= count

    def stop(self) -> None:
        self._stop.set()
