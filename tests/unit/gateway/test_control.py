"""The control-plane client over a mock transport: tables from the watch stream, reconnection with the last
table kept, load reports on a tick and at once for a held request, failures that stop nothing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx
import orjson
import pytest

from conveyor.gateway import Gateway
from conveyor.gateway.control import ControlPlaneClient
from conveyor.protocol.service import EncodedRequest
from tests.unit.gateway.fakes import FakeUpstream

HOLD = {"timeoutSeconds": 5.0, "maxRequests": 10}


def table(generation: int, *addresses: str, epoch: str = "e1", hold: Any = None) -> dict[str, Any]:
    replicas = [{"id": a, "address": a} for a in addresses]
    route = {"name": "tiny", "version": "1", "default": True, "replicas": replicas, "hold": hold}
    return {"epoch": epoch, "generation": generation, "routes": [route]}


Line = dict[str, Any] | list[Any] | str | asyncio.Event


async def _lines(*items: Line) -> AsyncIterator[bytes]:
    for item in items:
        if isinstance(item, asyncio.Event):  # the stream pauses here until the scenario sets it
            await item.wait()
            continue
        yield (item if isinstance(item, str) else orjson.dumps(item).decode()).encode() + b"\n"


class ControlPlane:
    """Answers each watch with the next scripted answer (or raises it); records report bodies."""

    def __init__(self, *watches: list[Line] | Exception | httpx.Response) -> None:
        self.watches = list(watches)
        self.watch_calls = 0
        self.reports: list[dict[str, Any]] = []
        self.fail_reports = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/gateways/report":
            if self.fail_reports:
                self.fail_reports -= 1
                raise httpx.ConnectError("refused", request=request)
            self.reports.append(orjson.loads(request.content))
            return httpx.Response(200, json={"ok": True})
        assert request.url.path == "/api/v1/routing/watch"
        self.watch_calls += 1
        answer = self.watches.pop(0) if self.watches else ConnectionRefusedError()
        if isinstance(answer, httpx.Response):
            return answer
        if isinstance(answer, Exception):
            raise httpx.ConnectError(str(answer), request=request)
        return httpx.Response(200, content=_lines(*answer))


def run(
    plane: ControlPlane,
    scenario: Callable[[Gateway, ControlPlaneClient], Coroutine[Any, Any, None]],
    **kw: Any,
) -> None:
    async def main() -> None:
        gw = Gateway(None, connect=FakeUpstream)
        client = ControlPlaneClient(
            gw, "http://cp", transport=httpx.MockTransport(plane), backoff_s=(0.01, 0.04), **kw
        )
        client.url = "http://127.0.0.1:8080"
        await client.start()
        try:
            await asyncio.wait_for(scenario(gw, client), 5)
        finally:
            await client.stop()

    asyncio.run(main())


async def until(check: Callable[[], bool]) -> None:
    while not check():
        await asyncio.sleep(0.005)


def test_tables_from_the_stream_are_applied_and_keep_alives_skipped() -> None:
    plane = ControlPlane([table(1, "unix:/a"), "", "  ", table(2, "unix:/b")])

    async def scenario(gw: Gateway, client: ControlPlaneClient) -> None:
        assert await client.wait_for_table(1)
        await until(lambda: gw.generation == 2)
        assert [r.upstream.address for r in gw.replicas] == ["unix:/b"]

    run(plane, scenario)


def test_a_lost_stream_keeps_the_table_and_reconnects_with_backoff_to_refetch() -> None:
    refused = ConnectionRefusedError("refused")
    plane = ControlPlane([table(3, "unix:/a")], refused, refused, [table(1, "unix:/b", epoch="e2")])

    async def scenario(gw: Gateway, client: ControlPlaneClient) -> None:
        await until(lambda: plane.watch_calls >= 3)
        assert (gw.epoch, gw.generation) == ("e1", 3)  # kept while the control plane is away
        await until(lambda: gw.epoch == "e2")  # a restarted control plane: a new epoch, applied
        assert [r.upstream.address for r in gw.replicas] == ["unix:/b"]

    run(plane, scenario)


MALFORMED: list[tuple[Any, str]] = [  # each with what the refusal must name
    ({"epoch": "e1"}, "generation is missing"),
    ("not json", "not JSON"),
    ([table(5, "unix:/x")], "must be an object"),
    ({**table(5, "unix:/x"), "generation": -1}, "must not be negative"),
    ({**table(5, "unix:/x"), "routes": [table(5)["routes"][0]] * 2}, "tiny:1 twice"),
    ({**table(5), "routes": [{**table(5)["routes"][0], "replicas": [{"address": ""}]}]}, "empty address"),
    (table(5, "unix:/x", hold={"timeoutSeconds": 0, "maxRequests": 1}), "timeoutSeconds > 0"),
]


def test_a_malformed_table_is_refused_and_the_stream_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    # A later generation (5) in most of them: applied even in part, it would also make generation 2 "older".
    paused = asyncio.Event()
    plane = ControlPlane([table(1, "unix:/a"), *(doc for doc, _ in MALFORMED), paused, table(2, "unix:/b")])

    def refusals() -> list[str]:
        return [r.getMessage() for r in caplog.records if "refused a routing table" in r.getMessage()]

    async def scenario(gw: Gateway, client: ControlPlaneClient) -> None:
        await until(lambda: len(refusals()) == len(MALFORMED))
        assert (gw.epoch, gw.generation) == ("e1", 1)  # the table kept, whole
        assert [r.upstream.address for r in gw.replicas] == ["unix:/a"]
        assert [(r.name, r.version) for r in gw.table.routes] == [("tiny", "1")]
        for message, (_, why) in zip(refusals(), MALFORMED, strict=True):
            assert why in message, (why, message)
        paused.set()
        await until(lambda: gw.generation == 2)
        assert plane.watch_calls == 1  # the same stream went on: no reconnection was needed
        assert [r.upstream.address for r in gw.replicas] == ["unix:/b"]

    with caplog.at_level(logging.ERROR, logger="conveyor.gateway"):
        run(plane, scenario)


def test_a_refused_token_is_an_error_saying_which_token_to_give_and_tables_come_once_it_works(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refused = httpx.Response(401, json={"error": "token 'gw' was revoked"})
    plane = ControlPlane(refused, refused, [table(1, "unix:/a")])

    async def scenario(gw: Gateway, client: ControlPlaneClient) -> None:
        assert await client.wait_for_table(2)
        assert gw.generation == 1

    with caplog.at_level(logging.ERROR, logger="conveyor.gateway"):
        run(plane, scenario, token="cvy_x")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and all("token 'gw' was revoked" in e and "--role gateway" in e for e in errors), errors


def test_the_gateway_sends_its_token_on_the_watch_and_the_reports() -> None:
    seen: list[str | None] = []
    plane = ControlPlane([table(1, "unix:/a")])

    async def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return await plane(request)

    async def main() -> None:
        gw = Gateway(None, connect=FakeUpstream)
        client = ControlPlaneClient(gw, "http://cp", transport=httpx.MockTransport(recording), token="cvy_t")
        client.url = "http://127.0.0.1:8080"
        await client.start()
        try:
            await asyncio.wait_for(until(lambda: len(plane.reports) >= 1), 5)
        finally:
            await client.stop()

    asyncio.run(main())
    assert seen and set(seen) == {"Bearer cvy_t"}


def test_no_table_in_time_is_reported_to_the_caller() -> None:
    async def scenario(gw: Gateway, client: ControlPlaneClient) -> None:
        assert not await client.wait_for_table(0.05)
        assert not gw.ready()

    run(ControlPlane(), scenario)


def test_reports_carry_the_acknowledged_table_and_in_flight_counts() -> None:
    plane = ControlPlane([table(4, "unix:/a")])

    async def scenario(gw: Gateway, client: ControlPlaneClient) -> None:
        await until(lambda: len(plane.reports) >= 2)  # one at once for the table, then on the tick
        report = plane.reports[-1]
        assert report["gateway"].startswith("gw-") and len(report["gateway"]) == 11
        assert (report["url"], report["grpcUrl"]) == ("http://127.0.0.1:8080", None)
        assert (report["epoch"], report["generation"]) == ("e1", 4)
        route = {"name": "tiny", "version": "1", "inFlight": 0, "held": 0}
        replica = {"address": "unix:/a", "admitted": True, "inFlight": 0}
        assert report["routes"] == [{**route, "replicas": [replica]}]

    run(plane, scenario, report_interval_s=0.02)


def test_a_held_request_is_reported_at_once() -> None:
    plane = ControlPlane([table(1, hold=HOLD)])

    async def scenario(gw: Gateway, client: ControlPlaneClient) -> None:
        assert await client.wait_for_table(1)
        await until(lambda: len(plane.reports) == 1)  # the table's acknowledgement
        held = asyncio.ensure_future(gw.infer(EncodedRequest("tiny", None, b"{}", None, "r")))
        await until(lambda: len(plane.reports) == 2)  # long before the 10 s tick
        assert plane.reports[-1]["routes"][0]["held"] == 1
        held.cancel()

    run(plane, scenario, report_interval_s=10)


def test_failed_reports_do_not_stop_the_reporter() -> None:
    plane = ControlPlane([table(1, "unix:/a")])
    plane.fail_reports = 3

    async def scenario(gw: Gateway, client: ControlPlaneClient) -> None:
        await until(lambda: len(plane.reports) >= 1)
        assert plane.fail_reports == 0

    run(plane, scenario, report_interval_s=0.01)
