"""The gateway under a table pushed by the control plane: atomic replacement, replica reuse, removal while in
flight, the default flag, refusal of a malformed table, and requests held for a scale-to-zero route."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from conveyor.errors import InvalidInput, NotFound, Unavailable
from conveyor.frontend.http_errors import status_for
from conveyor.gateway import Gateway
from conveyor.protocol import frames
from conveyor.protocol.service import EncodedRequest, EncodedResponse
from tests.unit.gateway.fakes import FakeUpstream

HOLD = {"timeoutSeconds": 5.0, "maxRequests": 2}


def route(version: str, *addresses: str, default: bool = False, hold: Any = None) -> dict[str, Any]:
    replicas = [{"id": a.rsplit("/", 1)[-1], "address": a} for a in addresses]
    return {"name": "tiny", "version": version, "default": default, "replicas": replicas, "hold": hold}


def table(*routes: dict[str, Any], generation: int = 1, epoch: str = "e1") -> dict[str, Any]:
    return {"epoch": epoch, "generation": generation, "routes": list(routes)}


class Stack:
    """A controlled gateway whose upstreams are fakes, made on demand and kept by address."""

    def __init__(self) -> None:
        self.made: dict[str, FakeUpstream] = {}
        self.gw = Gateway(None, connect=self._connect, rng=random.Random(0))

    def _connect(self, address: str) -> FakeUpstream:
        assert address not in self.made, f"{address} connected twice"
        frames.parse_address(address)  # as ChannelUpstream does: InvalidInput for a bad one
        self.made[address] = FakeUpstream(address)
        return self.made[address]

    async def infer(self, version: str | None = None) -> EncodedResponse:
        return await self.gw.infer(EncodedRequest("tiny", version, b"{}", None, "rid"))


def run(scenario: Callable[[Stack], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario(Stack()))


def test_a_pushed_table_routes_at_once_to_replicas_admitted_without_a_probe() -> None:
    async def scenario(s: Stack) -> None:
        assert not s.gw.ready()  # no table yet
        with pytest.raises(NotFound):
            await s.infer()
        s.gw.apply_table(table(route("1", "unix:/a"), generation=4))
        assert s.gw.ready() and (s.gw.epoch, s.gw.generation) == ("e1", 4)
        answer = await s.infer()
        assert (answer.body, answer.model_version) == (b"unix:/a", "1")

    run(scenario)


def test_replicas_are_reused_across_tables_with_their_health_and_load() -> None:
    async def scenario(s: Stack) -> None:
        s.gw.apply_table(table(route("1", "unix:/a")))
        a = s.gw.replicas[0]
        a.health.failure()
        s.gw.apply_table(table(route("1", "unix:/a"), route("2", "unix:/b", default=True), generation=2))
        assert s.gw.replicas[0] is a and a.health.failures == 1
        assert sorted(s.made) == ["unix:/a", "unix:/b"]  # one upstream per address, ever
        assert s.made["unix:/a"].closed == 0

    run(scenario)


def test_a_removed_replica_finishes_its_request_in_flight_then_closes() -> None:
    async def scenario(s: Stack) -> None:
        s.gw.apply_table(table(route("1", "unix:/a", default=True)))
        old = s.made["unix:/a"]
        old.gate = asyncio.Event()
        pending = asyncio.ensure_future(s.infer())
        await asyncio.sleep(0)
        assert len(old.seen) == 1
        s.gw.apply_table(table(route("2", "unix:/b", default=True), generation=2))
        assert (await s.infer()).body == b"unix:/b"  # new requests go to the new table at once
        await asyncio.sleep(0)
        assert old.closed == 0  # its request is still in flight
        old.gate.set()
        assert (await pending).body == b"unix:/a"
        await asyncio.sleep(0)
        assert old.closed == 1
        assert [r.upstream.address for r in s.gw.replicas] == ["unix:/b"]

    run(scenario)


def test_a_bare_name_reaches_the_default_route_not_the_highest_version() -> None:
    async def scenario(s: Stack) -> None:
        s.gw.apply_table(table(route("1", "unix:/a", default=True), route("2", "unix:/b")))
        assert (await s.infer()).model_version == "1"
        assert (await s.infer("2")).model_version == "2"
        s.gw.apply_table(table(route("1", "unix:/a"), route("2", "unix:/b"), generation=2))
        assert (await s.infer()).model_version == "2"  # none marked: the highest

    run(scenario)


def test_a_malformed_table_is_refused_and_the_old_one_kept() -> None:
    async def scenario(s: Stack) -> None:
        s.gw.apply_table(table(route("1", "unix:/a")))
        with pytest.raises(InvalidInput, match="version must be str"):
            s.gw.apply_table(table({**route("2", "unix:/b"), "version": 2}, generation=2))
        with pytest.raises(InvalidInput, match="channel address"):
            s.gw.apply_table(table(route("2", "nowhere"), generation=2))
        assert s.gw.generation == 1
        assert (await s.infer()).body == b"unix:/a"

    run(scenario)


def test_an_older_generation_is_ignored_but_a_new_epoch_starts_over() -> None:
    async def scenario(s: Stack) -> None:
        s.gw.apply_table(table(route("1", "unix:/a"), generation=5))
        s.gw.apply_table(table(route("1", "unix:/b"), generation=4))
        assert (await s.infer()).body == b"unix:/a"
        s.gw.apply_table(table(route("1", "unix:/b"), generation=1, epoch="e2"))
        assert (await s.infer()).body == b"unix:/b"

    run(scenario)


def test_metadata_is_not_served_from_cache_for_a_version_no_longer_routed() -> None:
    async def scenario(s: Stack) -> None:
        s.gw.apply_table(table(route("1", "unix:/a"), route("2", "unix:/b")))
        meta = await s.gw.model_metadata("tiny", "1")
        await s.gw.model_metadata("tiny", "1")
        assert meta["versions"] == ["1", "2"] and s.made["unix:/a"].metadata_calls == 1
        s.gw.apply_table(table(route("2", "unix:/b"), generation=2))
        with pytest.raises(NotFound):
            await s.gw.model_metadata("tiny", "1")
        assert (await s.gw.model_metadata("tiny", None))["versions"] == ["2"]

    run(scenario)


def test_a_scale_to_zero_route_does_not_make_the_gateway_unready() -> None:
    async def scenario(s: Stack) -> None:
        s.gw.apply_table(table(route("1", hold=HOLD), route("2", "unix:/b")))
        assert s.gw.ready()
        s.made["unix:/b"].healthy = False
        for _ in range(3):
            await s.gw.check_health()
        assert not s.gw.ready()

    run(scenario)


def test_a_route_with_no_replica_and_no_hold_is_unavailable_at_once() -> None:
    async def scenario(s: Stack) -> None:
        s.gw.apply_table(table(route("1")))
        with pytest.raises(Unavailable, match="no healthy replica of tiny:1"):
            await s.infer()

    run(scenario)


def test_a_held_request_waits_for_a_table_that_brings_a_replica() -> None:
    async def scenario(s: Stack) -> None:
        reports: list[int] = []
        s.gw.held.on_held = lambda: reports.append(s.gw.held.held(("tiny", "1")))
        s.gw.apply_table(table(route("1", hold=HOLD)))
        pending = asyncio.ensure_future(s.infer())
        await asyncio.sleep(0.01)
        assert not pending.done() and reports == [1]  # counted, and the reporter told at once
        s.gw.apply_table(table(route("1", "unix:/a", hold=HOLD), generation=2))
        assert (await pending).body == b"unix:/a"
        assert s.gw.held.held(("tiny", "1")) == 0

    run(scenario)


def test_a_held_request_is_released_when_a_probe_admits_a_replica() -> None:
    async def scenario(s: Stack) -> None:
        s.gw.apply_table(table(route("1", "unix:/a", hold=HOLD)))
        s.gw.replicas[0].health.eject()
        pending = asyncio.ensure_future(s.infer())
        await asyncio.sleep(0.01)
        assert not pending.done()
        await s.gw.check_health()
        assert (await pending).body == b"unix:/a"

    run(scenario)


def test_a_held_request_times_out_as_503() -> None:
    async def scenario(s: Stack) -> None:
        s.gw.apply_table(table(route("1", hold={"timeoutSeconds": 0.05, "maxRequests": 5})))
        with pytest.raises(Unavailable, match=r"within 0\.05s") as info:
            await s.infer()
        assert status_for(info.value) == 503
        assert s.gw.held.held(("tiny", "1")) == 0

    run(scenario)


def test_requests_beyond_max_held_are_refused_at_once() -> None:
    async def scenario(s: Stack) -> None:
        s.gw.apply_table(table(route("1", hold=HOLD)))
        waiting = [asyncio.ensure_future(s.infer()) for _ in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(Unavailable, match="2 requests already wait"):
            await s.infer()
        s.gw.apply_table(table(route("1", "unix:/a", hold=HOLD), generation=2))
        assert [(await w).body for w in waiting] == [b"unix:/a", b"unix:/a"]

    run(scenario)


def test_a_held_request_gets_404_when_its_route_is_removed() -> None:
    async def scenario(s: Stack) -> None:
        s.gw.apply_table(table(route("1", hold=HOLD)))
        pending = asyncio.ensure_future(s.infer())
        await asyncio.sleep(0.01)
        s.gw.apply_table(table(generation=2))
        with pytest.raises(NotFound):
            await pending

    run(scenario)
