"""A gateway under a table whose version's first replicas are starting: requests are held and answered once a
replica is ready, or get a 503 saying why when none gets ready; server and model readiness follow suit."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from conveyor.errors import Unavailable
from conveyor.frontend.http_errors import status_for
from conveyor.gateway import Gateway
from tests.unit.gateway.fakes import FakeUpstream
from tests.unit.gateway.test_dynamic_table import Stack, route, run, table

STARTING = {"timeoutSeconds": 5.0, "maxRequests": 100, "reason": "starting"}
ZERO = {"timeoutSeconds": 5.0, "maxRequests": 100, "reason": "scaledToZero"}


def named(name: str, version: str, *addresses: str, hold: Any = None) -> dict[str, Any]:
    return {**route(version, *addresses, hold=hold), "name": name}


def test_requests_to_a_starting_version_are_held_then_answered_when_a_replica_is_ready() -> None:
    async def scenario(s: Stack) -> None:
        s.gw.apply_table(table(route("1", hold=STARTING)))
        pending = [asyncio.ensure_future(s.infer()) for _ in range(8)]
        await asyncio.sleep(0.05)
        assert not any(p.done() for p in pending) and s.gw.held.held(("tiny", "1")) == 8
        s.gw.apply_table(table(route("1", "unix:/a"), generation=2))
        assert [(await p).body for p in pending] == [b"unix:/a"] * 8

    run(scenario)


def test_a_version_whose_replicas_never_get_ready_times_out_its_held_requests_with_a_503_saying_why() -> None:
    async def scenario(s: Stack) -> None:
        s.gw.apply_table(table(route("1", hold={**STARTING, "timeoutSeconds": 0.1})))
        with pytest.raises(Unavailable) as info:
            await s.infer()
        assert status_for(info.value) == 503
        assert str(info.value.message) == (
            "no replica of tiny:1 got ready within 0.1s: its replicas are still starting "
            "(see the deployment's events)"
        )
        assert s.gw.held.held(("tiny", "1")) == 0

    run(scenario)


def test_held_requests_get_a_503_at_once_when_the_replicas_stop_starting() -> None:
    async def scenario(s: Stack) -> None:
        s.gw.apply_table(table(route("1", hold=STARTING)))
        pending = asyncio.ensure_future(s.infer())
        await asyncio.sleep(0.01)
        s.gw.apply_table(table(route("1"), generation=2))  # it crashed: restarting after a backoff
        with pytest.raises(Unavailable, match="the ones starting stopped"):
            await pending

    run(scenario)


def test_strict_readiness_waits_for_every_deployment_and_any_for_one() -> None:
    async def scenario(s: Stack) -> None:
        any_gw = Gateway(None, connect=FakeUpstream, rng=random.Random(0), ready_when="any")
        starting = table(named("a", "1", "unix:/a"), named("b", "1", hold=STARTING))
        s.gw.apply_table(starting)
        assert not s.gw.ready()  # b's replicas are starting
        any_gw.apply_table({**starting, "routes": [named("a", "1", "unix:/a2"), named("b", "1")]})
        assert any_gw.ready()
        s.gw.apply_table(table(named("a", "1", "unix:/a"), named("b", "1", "unix:/b"), generation=2))
        assert s.gw.ready()
        # A deployment scaled to zero is ready by design: its requests wait for a scale-up.
        s.gw.apply_table(table(named("a", "1", "unix:/a"), named("b", "1", hold=ZERO), generation=3))
        assert s.gw.ready()

    run(scenario)


def test_model_readiness_says_not_ready_while_its_replicas_start() -> None:
    async def scenario(s: Stack) -> None:
        s.gw.apply_table(table(route("1", hold=STARTING)))
        assert await s.gw.model_ready("tiny", "1") == {
            "name": "tiny",
            "ready": False,
            "error": "no replica of tiny:1 is ready yet (its replicas are starting)",
        }
        s.gw.apply_table(table(route("1", "unix:/a"), generation=2))
        assert await s.gw.model_ready("tiny", None) == {"name": "tiny", "ready": True}

    run(scenario)
