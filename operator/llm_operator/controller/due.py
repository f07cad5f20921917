"""What the children's events ask of their LLMService, coalesced: one entry per LLMService, however many
events came, until a worker thread does it.

kopf runs a sync handler in its thread pool, and keeps each event's body (and its own wrappers around it)
alive while the handler waits for a thread. In a burst of 1000 LLMServices the children's events (about
20 per LLMService) waited that way by the thousands. The operator's RSS was the high-water mark of those
bodies: 500+ MiB for 122 MiB of live data, since Python keeps an arena that still holds one live object
(bench/operator_scale). So the children's handlers are async and return at once: they update the watch
cache and mark here what the owner needs, and `Workers` do it.

What an owner can need, strongest first:
- `reapply`: a child was deleted; apply the plan.
- `compare`: children changed; compare each (its latest body) with the plan applied last, and apply the
  plan if one drifted (a hand edit), else refresh status.
- `refresh`: a Deployment or Pod changed; refresh status (ready replicas, the scheduler's verdicts).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

_log = logging.getLogger("llm_operator")

OwnerKey = tuple[str, str]  # (namespace, name)
ChildKey = tuple[str, str]  # (kind, name)


@dataclass
class Due:
    owner: OwnerKey
    # The owner's uid from the child's ownerReference; None when the child names it by label (a Pod).
    uid: str | None = None
    reapply: bool = False
    compare: dict[ChildKey, dict[str, Any]] = field(default_factory=dict)
    refresh: bool = False


def comparable(child: Mapping[str, Any]) -> dict[str, Any]:
    """What the comparison with the applied plan reads: the plan never holds status or managedFields, and
    those are most of a child's body."""
    copy = {key: value for key, value in child.items() if key != "status"}
    copy["metadata"] = {key: value for key, value in (child.get("metadata") or {}).items() if key != "managedFields"}
    return copy


class DueQueue:
    """Owners in the order they first became due; an owner being worked on is not handed out again until
    `done`, and what it became due for meanwhile waits in a new entry."""

    def __init__(self) -> None:
        self._entries: dict[OwnerKey, Due] = {}
        self._busy: set[OwnerKey] = set()
        self._changed = threading.Condition()

    def mark(self, owner: OwnerKey, uid: str | None = None, *, reapply: bool = False,
             child: Mapping[str, Any] | None = None, refresh: bool = False) -> None:
        with self._changed:
            due = self._entries.get(owner)
            if due is None:
                due = self._entries[owner] = Due(owner)
            if uid is not None:
                due.uid = uid  # the latest: an owner deleted and created again is the new one
            due.reapply |= reapply
            due.refresh |= refresh
            if child is not None:
                due.compare[(str(child.get("kind")), str(child["metadata"]["name"]))] = comparable(child)
            self._changed.notify()

    def take(self, timeout: float) -> Due | None:
        """The oldest entry whose owner no other worker holds; None after `timeout` s without one."""
        with self._changed:
            due = self._next()
            if due is None and self._changed.wait_for(lambda: self._has_free(), timeout):
                due = self._next()
            if due is not None:
                self._busy.add(due.owner)
            return due

    def done(self, owner: OwnerKey) -> None:
        with self._changed:
            self._busy.discard(owner)
            self._changed.notify_all()

    def _has_free(self) -> bool:
        return any(owner not in self._busy for owner in self._entries)

    def _next(self) -> Due | None:
        for owner in self._entries:
            if owner not in self._busy:
                return self._entries.pop(owner)
        return None

    def __len__(self) -> int:
        return len(self._entries)


class Workers:
    """`count` threads that take entries from `queue` and call `work(entry)`."""

    def __init__(self, queue: DueQueue, work: Callable[[Due], None], count: int) -> None:
        self.queue, self.work = queue, work
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._run, name=f"due-{i}", daemon=True) for i in range(count)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            due = self.queue.take(timeout=1.0)
            if due is None:
                continue
            try:
                self.work(due)
            except Exception:  # one owner's failure must not stop the others'
                _log.exception(f"child events of {due.owner[0]}/{due.owner[1]}")
            finally:
                self.queue.done(due.owner)
