"""Leader election on a Lease: who may take it, when, and that a leader that cannot renew stops. The
apiserver is an in-memory stand-in with resourceVersions (the e2e suite runs two real operators)."""

from __future__ import annotations

import copy
import threading
import urllib.request
from typing import Any

import pytest
from kubernetes.dynamic.exceptions import ConflictError

from llm_operator.controller import leader
from llm_operator.controller.leader import LeaderElector, Observed, StandbyHealth, Timing, may_take, observe

TIMING = Timing(lease_seconds=15, renew_deadline_seconds=10, retry_seconds=2)


class FakeLeases:
    """Leases by name, with resourceVersions: a replace at a stale version conflicts, as on the apiserver."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.down = False

    def get(self, _api: str, _kind: str, _namespace: str, name: str) -> dict | None:
        if self.down:
            raise OSError("apiserver unreachable")
        return copy.deepcopy(self.leases.get(name))

    def _store(self, manifest: dict) -> dict:
        self.version += 1
        stored = copy.deepcopy(manifest)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.leases[manifest["metadata"]["name"]] = stored
        return stored

    def create(self, manifest: dict) -> dict:
        if manifest["metadata"]["name"] in self.leases:
            raise ConflictError(type("E", (), {"status": 409, "reason": "exists", "body": "", "headers": {}})())
        return self._store(manifest)

    def replace(self, manifest: dict) -> dict:
        current = self.leases[manifest["metadata"]["name"]]
        if current["metadata"]["resourceVersion"] != manifest["metadata"]["resourceVersion"]:
            raise ConflictError(type("E", (), {"status": 409, "reason": "conflict", "body": "", "headers": {}})())
        return self._store(manifest)


@pytest.fixture
def leases(monkeypatch: pytest.MonkeyPatch) -> FakeLeases:
    fake = FakeLeases()
    monkeypatch.setattr(leader.kube, "get", fake.get)
    monkeypatch.setattr(leader.kube, "create", fake.create)
    monkeypatch.setattr(leader.kube, "replace", fake.replace)
    return fake


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def elector(identity: str, clock: Clock) -> LeaderElector:
    return LeaderElector("ops", "llm-operator", identity, TIMING, clock=clock)


def test_observed_change_time_moves_only_when_the_record_changes() -> None:
    first = observe(None, "a", "t1", 10)
    assert observe(first, "a", "t1", 50) is first
    assert observe(first, "a", "t2", 50).changed_at == 50


@pytest.mark.parametrize(("holder", "since", "expected"), [
    (None, 0, True), ("", 0, True), ("me", 0, True), ("other", 14.9, False), ("other", 15, True),
])
def test_who_may_take_the_lease(holder: str | None, since: float, expected: bool) -> None:
    assert may_take(Observed(holder, "t", 100), "me", 100 + since, TIMING) is expected


def test_the_first_replica_takes_the_lease_and_the_second_waits(leases: FakeLeases) -> None:
    clock = Clock()
    a, b = elector("a", clock), elector("b", clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    spec = leases.leases["llm-operator"]["spec"]
    assert spec["holderIdentity"] == "a" and spec["leaseDurationSeconds"] == 15 and spec["leaseTransitions"] == 0


def test_a_standby_takes_over_only_after_the_leader_stops_renewing(leases: FakeLeases) -> None:
    clock = Clock()
    a, b = elector("a", clock), elector("b", clock)
    assert a.try_acquire_or_renew()
    for _ in range(10):  # the leader renews every 2 s: the standby never sees a stale record
        clock.now += 2
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
    clock.now += 14  # the leader died: the record stops changing
    assert not b.try_acquire_or_renew()
    clock.now += 2
    assert b.try_acquire_or_renew()
    spec = leases.leases["llm-operator"]["spec"]
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    assert not a.try_acquire_or_renew(), "the old leader, back, must not take it back while b renews"


def test_two_standbys_racing_for_the_lease_cannot_both_win(leases: FakeLeases) -> None:
    clock = Clock()
    assert elector("a", clock).try_acquire_or_renew()
    b, c = elector("b", clock), elector("c", clock)
    assert not b.try_acquire_or_renew() and not c.try_acquire_or_renew()
    clock.now += 16
    stale = leases.get("", "", "", "llm-operator")
    assert b.try_acquire_or_renew()
    # c read the record before b's write: its replace at the old resourceVersion conflicts.
    monkey_get = leases.get
    leases.get = lambda *args: copy.deepcopy(stale)  # type: ignore[method-assign]
    c.observed = Observed("a", stale["spec"]["renewTime"], clock.now - 16)
    assert not c.try_acquire_or_renew()
    leases.get = monkey_get  # type: ignore[method-assign]
    assert leases.leases["llm-operator"]["spec"]["holderIdentity"] == "b"


def test_a_leader_that_cannot_renew_before_the_deadline_stops(leases: FakeLeases) -> None:
    timing = Timing(lease_seconds=1.5, renew_deadline_seconds=0.6, retry_seconds=0.1)
    a = LeaderElector("ops", "llm-operator", "a", timing)
    assert a.try_acquire_or_renew()
    lost = threading.Event()
    reasons: list[str] = []
    a.keep(lambda why: (reasons.append(why), lost.set()))
    leases.down = True
    assert lost.wait(5), "the leader kept going without renewing"
    assert "not renewed" in reasons[0]


def test_a_leader_whose_lease_was_taken_stops_at_once(leases: FakeLeases) -> None:
    timing = Timing(lease_seconds=1.5, renew_deadline_seconds=0.6, retry_seconds=0.1)
    a = LeaderElector("ops", "llm-operator", "a", timing)
    assert a.try_acquire_or_renew()
    record = leases.leases["llm-operator"]
    record["spec"]["holderIdentity"] = "intruder"
    lost = threading.Event()
    reasons: list[str] = []
    a.keep(lambda why: (reasons.append(why), lost.set()))
    assert lost.wait(5)
    assert "held by intruder" in reasons[0]


def test_a_standby_answers_the_liveness_probe_until_it_leads() -> None:
    health = StandbyHealth("http://127.0.0.1:0/healthz")
    assert health.server is not None
    port = health.server.server_address[1]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
        assert answer.status == 200
    health.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
