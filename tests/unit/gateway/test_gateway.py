"""The gateway over fake upstreams: routing, retry once elsewhere, ejection and return, metadata cache."""

from __future__ import annotations

import asyncio
import random

import pytest

from conveyor.errors import InvalidInput, Overloaded, Unavailable
from conveyor.gateway import ConnectionFailed, Gateway, OutlierState, Replica, Route, RoutingTable
from conveyor.protocol.service import EncodedRequest, EncodedResponse
from tests.unit.gateway.fakes import FakeUpstream


def _stack(n: int = 2, eject_after: int = 3) -> tuple[Gateway, list[FakeUpstream]]:
    ups = [FakeUpstream(f"r{i}") for i in range(n)]
    replicas = [Replica(u, OutlierState(eject_after)) for u in ups]
    routes = [Route("lr", "1", replicas), Route("lr", "2", replicas)]
    gw = Gateway(RoutingTable(routes, {("lr", "prod"): "1"}), rng=random.Random(0))
    asyncio.run(gw.check_health())
    return gw, ups


def _infer(gw: Gateway, version: str | None = None, rid: str = "req-1") -> EncodedResponse:
    return asyncio.run(gw.infer(EncodedRequest("lr", version, b"{}", None, rid)))


def test_forwards_the_resolved_version_and_the_request_id() -> None:
    gw, ups = _stack()
    assert _infer(gw, None, "abc").request_id == "abc"
    assert _infer(gw, "prod").model_version == "1"
    seen = [r for u in ups for r in u.seen]
    assert sorted((r.version, r.request_id) for r in seen) == [("1", "req-1"), ("2", "abc")]


def _together(gw: Gateway, n: int) -> list[EncodedResponse | BaseException]:
    """``n`` requests in flight at once: each finds the others' in-flight counts, so they spread."""

    async def burst() -> list[EncodedResponse | BaseException]:
        calls = (gw.infer(EncodedRequest("lr", None, b"{}", None, f"req-{i}")) for i in range(n))
        return await asyncio.gather(*calls, return_exceptions=True)

    return asyncio.run(burst())


def test_a_connection_failure_is_retried_once_on_another_replica() -> None:
    gw, (r0, _) = _stack()
    r0.fail_with = ConnectionFailed("refused")
    answers = {a.body for a in _together(gw, 20) if isinstance(a, EncodedResponse)}
    assert answers == {b"r1"}
    assert len(r0.seen) > 0  # it was tried, and every such request still succeeded


def test_no_retry_for_errors_that_are_not_connection_failures() -> None:
    gw, (r0, r1) = _stack()
    r0.fail_with = r1.fail_with = InvalidInput("bad input")
    with pytest.raises(InvalidInput):
        _infer(gw)
    assert len(r0.seen) + len(r1.seen) == 1


def test_at_most_one_retry() -> None:
    gw, ups = _stack(3)
    for u in ups:
        u.fail_with = ConnectionFailed("down")
    with pytest.raises(ConnectionFailed):
        _infer(gw)
    assert sum(len(u.seen) for u in ups) == 2


def test_no_healthy_replica_is_unavailable() -> None:
    gw, ups = _stack()
    for u in ups:
        u.healthy = False
    for _ in range(3):
        asyncio.run(gw.check_health())
    assert not gw.ready()
    with pytest.raises(Unavailable, match="no healthy replica of lr:2"):
        _infer(gw)
    # V2 model readiness answers "not ready" (REST: a 4xx) rather than failing the call.
    ready = asyncio.run(gw.model_ready("lr", None))
    assert ready["ready"] is False and "no healthy replica of lr:2" in ready["error"]


def test_a_failing_replica_is_ejected_then_readmitted_by_its_probe() -> None:
    gw, (r0, _) = _stack(eject_after=2)
    r0.fail_with = Unavailable("replica broken")
    # Two at a time: the one r1 answered last is busy with the first, so the second goes to r0.
    answers = [a for _ in range(15) for a in _together(gw, 2)]
    failures = sum(isinstance(a, Unavailable) for a in answers)
    assert failures == 2  # two faults eject it; after that only r1 is chosen
    assert not gw.replicas[0].admitted
    r0.fail_with = None
    asyncio.run(gw.check_health())
    assert gw.replicas[0].admitted
    assert b"r0" in {a.body for _ in range(5) for a in _together(gw, 2) if isinstance(a, EncodedResponse)}


def test_one_request_at_a_time_stays_on_the_replica_that_answered_last() -> None:
    gw, _ = _stack(3)
    bodies = [_infer(gw).body for _ in range(30)]
    assert len(set(bodies)) == 1  # warm: its process awake, its caches hot
    warm = bodies[0]
    gw.eject(warm.decode())
    after = {_infer(gw).body for _ in range(30)}
    assert len(after) == 1 and warm not in after  # ejected: the next answer makes another one warm


def test_a_request_arriving_while_the_warm_replica_is_busy_goes_elsewhere() -> None:
    gw, _ = _stack(2)
    first = _infer(gw).body
    answers = _together(gw, 2)
    bodies = sorted(a.body for a in answers if isinstance(a, EncodedResponse))
    assert bodies == [b"r0", b"r1"]  # the first of the two took the warm one, the second the idle one
    assert first in bodies


def test_eject_by_address_removes_a_replica_at_once() -> None:
    gw, _ = _stack()
    gw.eject("r0")
    assert {_infer(gw).body for _ in range(10)} == {b"r1"}


def test_model_metadata_is_fetched_once_and_lists_the_gateways_versions() -> None:
    gw, ups = _stack()
    for _ in range(3):
        meta = asyncio.run(gw.model_metadata("lr", "prod"))
    assert meta["versions"] == ["1", "2"]
    assert sum(u.metadata_calls for u in ups) == 1


def test_in_flight_counts_return_to_zero() -> None:
    gw, _ = _stack()

    async def burst() -> None:
        await asyncio.gather(*(gw.infer(EncodedRequest("lr", "1", b"{}", None, str(i))) for i in range(50)))

    asyncio.run(burst())
    assert [r.inflight for r in gw.replicas] == [0, 0]


class QueueUpstream(FakeUpstream):
    """Holds up to ``capacity`` requests until released; refuses more with Overloaded, as a full replica."""

    def __init__(self, address: str, capacity: int) -> None:
        super().__init__(address)
        self.capacity = capacity
        self.held: list[asyncio.Future[None]] = []

    async def infer(self, request: EncodedRequest) -> EncodedResponse:
        self.seen.append(request)
        if len(self.held) >= self.capacity:
            raise Overloaded(f"{self.address} is full")
        done = asyncio.get_running_loop().create_future()
        self.held.append(done)
        await done
        self.held.remove(done)
        return EncodedResponse(self.address.encode(), None, request.request_id, request.version)


def test_the_gateway_sheds_when_every_replica_is_full_without_forwarding() -> None:
    ups = [QueueUpstream(f"r{i}", capacity=1) for i in range(2)]
    gw = Gateway(RoutingTable([Route("lr", "1", [Replica(u, OutlierState(3)) for u in ups])]))
    asyncio.run(gw.check_health())

    def request(i: int) -> EncodedRequest:
        return EncodedRequest("lr", None, b"{}", None, f"req-{i}")

    async def scenario() -> tuple[list[EncodedResponse | BaseException], int, str, str]:
        held = [asyncio.ensure_future(gw.infer(request(i))) for i in range(2)]  # one on each replica
        while sum(len(u.held) for u in ups) < 2:
            await asyncio.sleep(0)
        refused = await asyncio.gather(*(gw.infer(request(i)) for i in range(2, 8)), return_exceptions=True)
        forwarded = sum(len(u.seen) for u in ups)
        with pytest.raises(Overloaded, match="every replica of lr:1 has a full queue"):
            gw.admit("lr", None)  # decided from the head, before any body is read
        freed = ups[0]
        freed.held[0].set_result(None)  # one of its requests ends: it may take another
        await asyncio.wait(held, return_when=asyncio.FIRST_COMPLETED)
        gw.admit("lr", None)
        later = asyncio.ensure_future(gw.infer(request(9)))
        while not freed.held:
            await asyncio.sleep(0)
        for u in ups:
            for f in list(u.held):
                f.set_result(None)
        answer = await later
        await asyncio.gather(*held)
        return refused, forwarded, freed.address, answer.body.decode()

    refused, forwarded, freed, answered_by = asyncio.run(scenario())
    assert len(refused) == 6 and all(isinstance(r, Overloaded) for r in refused)
    # Only the first refusal of each replica crossed a hop; the gateway refused the other four itself.
    assert forwarded == 4
    assert answered_by == freed  # the next request went to the replica with room, not the full one
