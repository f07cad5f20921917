"""What the operator remembers about each LLMService between events, in one object per uid.

Everything is keyed by the object's uid, never by namespace/name: an LLMService deleted and created
again under the same name is a new object and starts with nothing of the old one (its replica count,
its metric history, its warnings). `States.drop(uid)` on deletion is the one place it is forgotten.
Losing it all (an operator restart) is safe: status keeps what must survive (desiredReplicas,
lastScaleTime), and the rest is rebuilt by the next reconcile and the next autoscaling ticks.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from llm_operator.api.models import LLMService
from llm_operator.autoscale.policy import Sample, ScalerState

Condition = tuple[str, str, str]  # (status, reason, message)


@dataclass(frozen=True)
class AppliedPlan:
    digest: str
    at: float  # time.monotonic() of the apply
    objects: list[dict]


@dataclass
class ServiceState:
    uid: str
    # Serializes reconciles of this object (kopf handlers, the resync and the autoscaler run apart).
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    last_applied: AppliedPlan | None = None
    # The status this process wrote last: compared with it, not with a body a few events old.
    last_status: dict | None = None
    # One Warning Event per distinct message, per topic ("spec", "secrets").
    warnings: dict[str, str] = field(default_factory=dict)
    # The autoscaler's: the replica count it decided (None until it decides, or with autoscaling off),
    # its ScalingActive condition, the metric history and the policy's own state.
    replicas: int | None = None
    scaling: Condition | None = None
    history: deque[Sample] = field(default_factory=deque)
    scaler: ScalerState | None = None
    # The Hub's last failure to give the model's parameter count: ((model, revision), monotonic time, message).
    hub_failure: tuple[tuple[str, str], float, str] | None = None
    # The spec as the pydantic model, parsed once per generation: (generation, model or None if invalid).
    parsed: tuple[int, LLMService | None] | None = None

    def warn_once(self, topic: str, message: str) -> bool:
        """Whether `message` is new for `topic` (then it is remembered, and the caller posts it)."""
        if self.warnings.get(topic) == message:
            return False
        self.warnings[topic] = message
        return True

    def stop_autoscaling(self) -> None:
        self.replicas, self.scaling, self.scaler = None, None, None
        self.history = deque()


class States:
    """ServiceState per uid, created on first use and dropped when the LLMService is deleted."""

    def __init__(self) -> None:
        self._by_uid: dict[str, ServiceState] = {}
        self._lock = threading.Lock()

    def of(self, uid: str) -> ServiceState:
        with self._lock:
            state = self._by_uid.get(uid)
            if state is None:
                state = self._by_uid[uid] = ServiceState(uid)
            return state

    def get(self, uid: str) -> ServiceState | None:
        return self._by_uid.get(uid)

    def drop(self, uid: str) -> None:
        with self._lock:
            self._by_uid.pop(uid, None)

    def __len__(self) -> int:
        return len(self._by_uid)
