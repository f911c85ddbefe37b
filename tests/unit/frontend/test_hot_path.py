"""Which requests the hot path takes, driven through uvicorn's protocol with an in-memory transport.

The integration test (tests/integration/test_hot_path.py) shows the answers match the regular route's over
real sockets; this one shows the hot path is the one answering — the service called without the ASGI app,
one write per answer — and that what it must not take reaches the ASGI app whole.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from conveyor.errors import Overloaded, PermissionDenied, Unauthenticated
from conveyor.frontend.bodies import BodyReader
from conveyor.frontend.hot_path import HOT_BODY_WAIT_S, HOT_MAX_SPLIT_BODY, hot_protocol, parse_infer_path
from conveyor.protocol.service import EncodedRequest, EncodedResponse


class Service:
    """An InferenceService that echoes the request's size; what it received is kept."""

    def __init__(self) -> None:
        self.requests: list[EncodedRequest] = []
        self.refuse: str | None = None  # admit() raises Overloaded with this message
        self.token: str | None = None  # authorize() wants "Bearer <token>" when set
        self.authorized: list[str | None] = []  # the Authorization values it was asked about

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return True

    def server_metadata(self) -> dict[str, Any]:
        return {}

    async def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        return {}

    async def model_ready(self, name: str, version: str | None) -> dict[str, Any]:
        return {}

    def authorize(self, name: str, version: str | None, authorization: str | None) -> None:
        self.authorized.append(authorization)
        if self.token is None:
            return
        if authorization is None:
            raise Unauthenticated("authentication required: send Authorization: Bearer <token>")
        if authorization != f"Bearer {self.token}":
            raise PermissionDenied(f"token may not call {name!r}")

    def admit(self, name: str, version: str | None) -> None:
        if self.refuse is not None:
            raise Overloaded(self.refuse)

    async def infer(self, request: EncodedRequest) -> EncodedResponse:
        self.requests.append(request)
        return EncodedResponse(b'{"n":%d}' % len(request.body), None, request.request_id, "1")


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.times: list[float] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        self.times.append(time.monotonic())

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Regular:
    """The ASGI app: the regular path. Records the bodies it got."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})


def request(path: str, body: bytes, *headers: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


HELD: list[int] = []  # the body budget's bytes held after each drive: every reservation given back


async def drive(
    *chunks: bytes,
    max_bytes: int = 1 << 20,
    gap_s: float = 0.01,
    refuse: str | None = None,
    linger_s: float = 0.0,
    token: str | None = None,
) -> tuple[Service, Regular, Transport]:
    service, app = Service(), Regular()
    service.refuse, service.token = refuse, token
    config = uvicorn.Config(app, log_level="warning")
    config.load()
    bodies = BodyReader(max_bytes=max_bytes, budget_bytes=1 << 24, idle_timeout_s=5, timeout_s=5)
    state = ServerState()
    protocol = hot_protocol(service, bodies)(config=config, server_state=state, app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    for chunk in chunks:
        protocol.data_received(chunk)
        await asyncio.sleep(gap_s)
    for _ in range(100):
        if not state.tasks:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(linger_s)
    protocol.connection_lost(None)
    HELD.append(bodies.budget.held)
    return service, app, transport


def test_a_plain_infer_request_is_answered_by_the_service_in_one_write() -> None:
    body = b'{"inputs": []}'
    service, app, transport = asyncio.run(
        drive(request("/v2/models/m/versions/2/infer", body, "X-Request-Id: a"))
    )
    assert app.bodies == []
    [req] = service.requests
    assert (req.model, req.version, req.body, req.request_id) == ("m", "2", body, "a")
    [answer] = transport.writes
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b'\r\n\r\n{"n":14}')
    assert b"x-request-id: a\r\n" in answer


def test_a_refused_request_is_answered_429_from_its_head_without_a_task_or_its_body() -> None:
    raw = request("/v2/models/m/infer", b'{"inputs": [1, 2, 3]}', "X-Request-Id: r1")
    HELD.clear()
    service, app, transport = asyncio.run(drive(raw, refuse="queue full; retry later"))
    assert service.requests == [] and app.bodies == [] and HELD == [0]  # infer never called
    [first] = transport.writes  # one write, the connection kept
    assert b"connection: close" not in first
    assert first.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    assert b"retry-after: 1\r\n" in first and b"x-request-id: r1\r\n" in first
    assert first.endswith(b'{"error":"queue full; retry later"}')


def test_a_request_without_a_token_is_answered_401_from_its_head_without_a_task_or_its_body() -> None:
    raw = request("/v2/models/m/infer", b'{"inputs": [1, 2, 3]}', "X-Request-Id: r1")
    HELD.clear()
    service, app, transport = asyncio.run(drive(raw, token="s3cret", refuse="full"))
    assert service.requests == [] and app.bodies == [] and HELD == [0]
    [first] = transport.writes
    assert first.startswith(b"HTTP/1.1 401 Unauthorized\r\n")  # before the queue's 429: who asks comes first
    assert b'www-authenticate: Bearer realm="conveyor"\r\n' in first and b"retry-after" not in first
    assert first.endswith(b'{"error":"authentication required: send Authorization: Bearer <token>"}')


def test_the_authorization_header_is_handed_to_the_service_and_a_wrong_token_gets_403() -> None:
    ok = request("/v2/models/m/infer", b"{}", "Authorization: Bearer s3cret")
    wrong = request("/v2/models/m/infer", b"{}", "Authorization: Bearer other")
    service, _, transport = asyncio.run(drive(ok, wrong, token="s3cret"))
    assert service.authorized == ["Bearer s3cret", "Bearer other"]
    assert len(service.requests) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 ") and transport.writes[1].startswith(
        b"HTTP/1.1 403 "
    )


def test_a_retry_before_retry_after_is_refused_only_once_that_has_passed() -> None:
    raw = request("/v2/models/m/infer", b"{}")
    service, _, transport = asyncio.run(drive(raw, raw, gap_s=0.05, refuse="full", linger_s=1.2))
    assert service.requests == [] and len(transport.writes) == 2
    assert all(w.startswith(b"HTTP/1.1 429 ") for w in transport.writes)
    assert 0.9 <= transport.times[1] - transport.times[0] <= 1.1  # the second waited out the first's second


def test_a_refused_request_whose_body_comes_in_pieces_is_answered_once_it_has_gone_by() -> None:
    service, _, transport = asyncio.run(drive(*_split(b'{"inputs": [1, 2, 3]}', 0, 5), refuse="full"))
    [answer] = transport.writes
    assert answer.startswith(b"HTTP/1.1 429 ") and b"connection: close" not in answer
    assert service.requests == []


def test_a_refused_request_whose_body_stalls_is_answered_and_its_connection_closed() -> None:
    pieces = _split(b'{"inputs": [1, 2, 3]}', 2)
    _, _, transport = asyncio.run(drive(*pieces, gap_s=HOT_BODY_WAIT_S * 3, refuse="full"))
    [answer] = transport.writes
    assert answer.startswith(b"HTTP/1.1 429 ") and b"connection: close\r\n" in answer
    assert transport.closed


def test_pipelined_requests_are_answered_in_order() -> None:
    """The first is hot; the ones pipelined behind it wait their turn (on whichever path)."""
    raw = b"".join(request("/v2/models/m/infer", b"{}", f"X-Request-Id: {i}") for i in range(3))
    service, app, transport = asyncio.run(drive(raw))
    assert service.requests[0].request_id == "0"
    assert len(service.requests) + len(app.bodies) == 3
    assert b"".join(transport.writes).count(b"HTTP/1.1 200 OK\r\n") == 3
    assert b"x-request-id: 0\r\n" in transport.writes[0]


def _split(body: bytes, *cuts: int) -> list[bytes]:
    raw = request("/v2/models/m/infer", body)
    at = [0, *(raw.index(b"\r\n\r\n") + 4 + c for c in cuts), len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(at)]


def test_a_body_arriving_in_several_reads_stays_on_the_hot_path() -> None:
    body = b'{"inputs": [1, 2, 3, 4, 5, 6, 7, 8]}'
    HELD.clear()
    service, app, transport = asyncio.run(drive(*_split(body, 0, 2, 9)))  # head alone, then three reads
    assert app.bodies == [] and [r.body for r in service.requests] == [body]
    [answer] = transport.writes
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert HELD == [0]


def test_a_body_whose_rest_is_slow_goes_the_regular_way_whole() -> None:
    body = b'{"inputs": [1, 2, 3]}'
    HELD.clear()
    service, app, transport = asyncio.run(drive(*_split(body, 2), gap_s=HOT_BODY_WAIT_S * 3))
    assert service.requests == [] and app.bodies == [body]
    assert b"".join(transport.writes).startswith(b"HTTP/1.1 200 OK")
    assert HELD == [0]


def test_a_big_body_split_from_its_head_goes_the_regular_way_at_once() -> None:
    body = b"x" * (HOT_MAX_SPLIT_BODY + 1)
    service, app, _ = asyncio.run(drive(*_split(body, 100), max_bytes=2 * HOT_MAX_SPLIT_BODY))
    assert service.requests == [] and app.bodies == [body]


def test_a_client_leaving_mid_body_gives_its_reservation_back() -> None:
    HELD.clear()
    service, app, _ = asyncio.run(drive(_split(b'{"inputs": [1, 2, 3]}', 2)[0] + b"{}", gap_s=0))
    assert service.requests == [] and app.bodies == [] and HELD == [0]


@pytest.mark.parametrize(
    "raw",
    [
        request("/v2/models/m/infer?x=1", b"{}"),
        request("/v2/models/m/ready", b"{}"),
        request("/v2/models/m/infer", b"{}", "Expect: 100-continue"),
        b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n",
        b"GET /v2/models/m/infer HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_what_the_hot_path_leaves_to_the_regular_route(raw: bytes) -> None:
    service, app, _ = asyncio.run(drive(raw))
    assert service.requests == [] and len(app.bodies) == 1


def test_a_body_over_the_limit_is_left_to_the_regular_route() -> None:
    service, app, _ = asyncio.run(drive(request("/v2/models/m/infer", b"x" * 100), max_bytes=10))
    assert service.requests == [] and app.bodies == [b"x" * 100]


@pytest.mark.parametrize(
    ("url", "target"),
    [
        (b"/v2/models/m/infer", ("m", None)),
        (b"/v2/models/m/versions/3/infer", ("m", "3")),
        (b"/v2/models//infer", None),
        (b"/v2/models/m/versions//infer", None),
        (b"/v2/models/a/b/infer", None),
        (b"/v2/models/m%20x/infer", None),
        (b"/v2/models/m/infer?x", None),
    ],
)
def test_infer_paths(url: bytes, target: tuple[str, str | None] | None) -> None:
    assert parse_infer_path(url) == target
