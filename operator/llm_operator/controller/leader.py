"""Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does it: of the operator's
replicas, only the one holding the Lease runs kopf (reconciles, autoscales); the others wait for it.

- A standby takes the Lease when its holder has not renewed it for `lease_seconds`, measured on the
  standby's own clock from when it last saw the record change (not from the record's timestamp, so the
  replicas' clocks need not agree). Every write is a replace at the resourceVersion read, so two standbys
  cannot both take it.
- The leader renews every `retry_seconds`. If it has not renewed for `renew_deadline_seconds` (shorter than
  `lease_seconds`), it stops the process at once: it may no longer be the leader, and a stopped operator
  cannot write beside its successor. Its Pod restarts and becomes a standby.

Why a Lease and not kopf's peering: peering pauses operators of lower priority, but replicas of one
Deployment share a priority, and kopf then freezes all of them; a Lease also fails over in seconds (about
`lease_seconds`), where a peering record lives 60 s.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from kubernetes.dynamic.exceptions import ConflictError, NotFoundError

from llm_operator import kube, metrics

_log = logging.getLogger("llm_operator")

LEASE_API_VERSION = "coordination.k8s.io/v1"


@dataclass(frozen=True)
class Timing:
    lease_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_seconds: float = 2.0


@dataclass(frozen=True)
class Observed:
    """The Lease record as last read, and when (this process's monotonic clock) it last changed."""

    holder: str | None
    renew_time: str | None
    changed_at: float


def now_micro() -> str:
    """A MicroTime, as Lease.spec.renewTime holds it."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def observe(previous: Observed | None, holder: str | None, renew_time: str | None, now: float) -> Observed:
    """The record seen at `now`: its change time moves only when holder or renewTime changed."""
    if previous is not None and (previous.holder, previous.renew_time) == (holder, renew_time):
        return previous
    return Observed(holder, renew_time, now)


def may_take(observed: Observed, identity: str, now: float, timing: Timing) -> bool:
    """Whether `identity` may write the Lease: it holds it, nobody does, or the holder stopped renewing."""
    if observed.holder in (None, "", identity):
        return True
    return now - observed.changed_at >= timing.lease_seconds


class LeaderElector:
    def __init__(self, namespace: str, name: str, identity: str, timing: Timing = Timing(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.namespace, self.name, self.identity, self.timing, self.clock = namespace, name, identity, timing, clock
        self.observed: Observed | None = None
        self.renewed_at: float | None = None

    def _lease(self, lease: dict[str, Any] | None) -> dict[str, Any]:
        spec = (lease or {}).get("spec") or {}
        holding = spec.get("holderIdentity") == self.identity
        stamp = now_micro()
        return {
            "apiVersion": LEASE_API_VERSION, "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace,
                         **({"resourceVersion": lease["metadata"]["resourceVersion"]} if lease else {})},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.timing.lease_seconds),
                "acquireTime": spec.get("acquireTime") if holding and spec.get("acquireTime") else stamp,
                "renewTime": stamp,
                "leaseTransitions": (spec.get("leaseTransitions") or 0) + (0 if holding or not lease else 1),
            },
        }

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this process holds the Lease afterwards."""
        lease = kube.get(LEASE_API_VERSION, "Lease", self.namespace, self.name)
        now = self.clock()
        spec = (lease or {}).get("spec") or {}
        self.observed = observe(self.observed, spec.get("holderIdentity"), spec.get("renewTime"), now)
        if lease is not None and not may_take(self.observed, self.identity, now, self.timing):
            return False
        try:
            if lease is None:
                kube.create(self._lease(None))
            else:
                kube.replace(self._lease(lease))
        except ConflictError:  # another replica wrote it first (or it was created meanwhile)
            return False
        except NotFoundError:
            return False
        self.renewed_at = now
        return True

    def acquire(self, stop: threading.Event | None = None) -> None:
        """Block until this process holds the Lease."""
        _log.info(f"waiting for the leader Lease {self.namespace}/{self.name} as {self.identity}")
        while not (stop and stop.is_set()):
            if self._attempt():
                holder = self.observed.holder if self.observed else None
                _log.info(f"leader: {self.identity} holds the Lease {self.namespace}/{self.name} (was {holder})")
                return
            time.sleep(self.timing.retry_seconds)

    def _attempt(self) -> bool:
        try:
            return self.try_acquire_or_renew()
        except Exception as error:  # the apiserver unreachable: try again, like client-go
            _log.warning(f"leader election: {error}")
            return False

    def keep(self, on_lost: Callable[[str], None], stop: threading.Event | None = None) -> threading.Thread:
        """Renew in a daemon thread; call `on_lost` once the Lease may have been lost."""
        def run() -> None:
            while not (stop and stop.is_set()):
                time.sleep(self.timing.retry_seconds)
                if self._attempt():
                    continue
                if self.observed and self.observed.holder not in (None, "", self.identity):
                    on_lost(f"the Lease {self.namespace}/{self.name} is held by {self.observed.holder}")
                    return
                since = self.clock() - (self.renewed_at or 0)
                if since >= self.timing.renew_deadline_seconds:
                    on_lost(f"the Lease {self.namespace}/{self.name} was not renewed for {since:.1f} s")
                    return

        thread = threading.Thread(target=run, name="leader-lease", daemon=True)
        thread.start()
        return thread


class StandbyHealth:
    """Answers the liveness URL while a standby waits for the Lease (kopf serves it once leading), so the
    kubelet does not restart a healthy standby."""

    def __init__(self, url: str | None) -> None:
        self.server: ThreadingHTTPServer | None = None
        if not url:
            return
        parts = urlsplit(url)
        path = parts.path or "/"

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status = 200 if self.path.split("?")[0] == path else 404
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"standby\n" if status == 200 else b"")

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer((parts.hostname or "0.0.0.0", parts.port or 80), Handler)
        threading.Thread(target=self.server.serve_forever, name="standby-health", daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def lead(namespace: str, name: str, identity: str, liveness: str | None, on_lost: Callable[[str], None],
         timing: Timing = Timing()) -> LeaderElector:
    """Wait for the Lease (answering liveness meanwhile), then keep renewing it; `on_lost` if it may be lost."""
    metrics.leader.set(0)
    health = StandbyHealth(liveness)
    elector = LeaderElector(namespace, name, identity, timing)
    try:
        elector.acquire()
    finally:
        health.stop()
    metrics.leader.set(1)
    elector.keep(on_lost)
    return elector
