"""The leader election's fencing on a fake clock, and a follower's answer to writes."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from conveyor import errors
from conveyor.control.leader import FollowerRefusesWrites, LeaderElection
from conveyor.registry.leases import Lease, LeaseStore


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Leases:
    """A lease table whose answers the test sets; ``down`` makes every call fail as a lost database does."""

    def __init__(self) -> None:
        self.holder: str | None = None
        self.down = False
        self.full = False  # every write fails for lack of space

    def acquire(self, name: str, holder: str, ttl_s: float, address: str | None = None) -> Lease | None:
        if self.down:
            raise errors.Unavailable("cannot reach the registry database")
        if self.full:
            raise errors.DiskFull("disk full: cannot write the registry database (No space left on device)")
        if self.holder not in (None, holder):
            return None
        self.holder = holder
        return Lease(name, holder, address, 1, 0.0, 1000.0 + ttl_s, 1000.0)

    def current(self, name: str) -> Lease | None:
        if self.holder is None:
            return None
        return Lease(name, self.holder, "http://other:8000", 7, 0.0, 2000.0, 1000.0)

    def release(self, name: str, holder: str) -> bool:
        self.holder = None
        return True


def _election(leases: Leases, clock: Clock, changes: list[bool] | None = None) -> LeaderElection:
    on_change = None if changes is None else changes.append
    return LeaderElection(cast(LeaseStore, leases), "me", 6.0, clock=clock, on_change=on_change)


def test_a_leader_that_cannot_renew_stops_acting_before_its_lease_ends() -> None:
    leases, clock, changes = Leases(), Clock(), list[bool]()
    election = _election(leases, clock, changes)
    assert asyncio.run(election.campaign()) and changes == [True]
    leases.down = True
    clock.now += 2.0  # one renewal fails: still inside the lease
    assert asyncio.run(election.campaign()) and changes == [True]
    clock.now += 2.9  # 4.9 s after the last successful try: inside ttl - ttl/6 = 5 s
    assert election.is_leader
    clock.now += 0.2  # 5.1 s: the margin is reached, while the database keeps it 0.9 s more
    assert not election.is_leader
    asyncio.run(election.campaign())
    assert changes == [True, False]


def test_a_follower_names_the_leader_and_takes_over_when_free() -> None:
    leases, clock = Leases(), Clock()
    leases.holder = "other"
    election = _election(leases, clock)
    assert not asyncio.run(election.campaign())
    assert election.describe_leader() == "other at http://other:8000"
    status = election.status()
    assert status["leader"] is False and status["current"]["holder"] == "other"
    leases.holder = None
    assert asyncio.run(election.campaign()) and election.status()["current"]["holder"] == "me"


def test_a_follower_refuses_writes_with_503_naming_the_leader() -> None:
    leases, clock = Leases(), Clock()
    leases.holder = "other"
    election = _election(leases, clock)
    asyncio.run(election.campaign())

    async def ok(request: Any) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/api/v1/{rest:path}", ok, methods=["GET", "POST", "DELETE"])])
    client = TestClient(FollowerRefusesWrites(app, election))
    assert client.get("/api/v1/deployments").status_code == 200  # reads are answered
    assert client.post("/api/v1/gateways/report").status_code == 200  # its gateways still report
    for method in ("POST", "DELETE"):
        refused = client.request(method, "/api/v1/deployments/iris")
        assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
        assert refused.headers["x-conveyor-api"] == "v1"
        assert refused.json() == {
            "error": "this control plane is a follower and does not take changes; the leader is other at "
            "http://other:8000",
            "leader": {"holder": "other", "address": "http://other:8000"},
        }
    leases.holder = None
    asyncio.run(election.campaign())
    assert client.post("/api/v1/apply").status_code == 200  # the leader takes writes


def test_a_leader_that_lost_its_lease_to_a_full_disk_refuses_writes_507_saying_so() -> None:
    leases, clock = Leases(), Clock()
    election = _election(leases, clock)
    asyncio.run(election.campaign())
    leases.full = True
    clock.now += 6.0
    assert not asyncio.run(election.campaign())

    async def ok(request: Any) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/api/v1/{rest:path}", ok, methods=["GET", "POST"])])
    client = TestClient(FollowerRefusesWrites(app, election))
    refused = client.post("/api/v1/apply")
    assert refused.status_code == 507, refused.text
    assert refused.json()["error"] == (
        "disk full: cannot write the registry database (No space left on device) (the leader lease could "
        "not be renewed, so no changes are taken)"
    )
    leases.full = False  # space freed: it leads again at its next try, and takes writes
    assert asyncio.run(election.campaign()) and client.post("/api/v1/apply").status_code == 200
