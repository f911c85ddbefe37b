"""What a bearer token adds to one gateway request, timed in-process: steadier than any throughput ratio on a
shared machine, and where the authentication section's difference should come from.

Two pieces, each the best of several timed loops, with the token minus without it: uvicorn's parsing of the
request head (httptools with an ``on_header`` like uvicorn's, then the hot path's scan of the headers) with
and without hey's ``Authorization: Bearer <token>`` line; and ``Gateway.authorize`` on a token route (the
header's latin-1 decode, the route lookup, the verifier's per-header cache, the role check) against the same
call on a public route.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

import httptools

from conveyor.errors import Unauthenticated
from conveyor.gateway.auth import GatewayAuth
from conveyor.gateway.gateway import Gateway
from conveyor.gateway.table import Route, RoutingTable
from conveyor.security.tokens import TokenRecord, Verifier, new_token

_HEAD = (
    b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: hey/0.0.1\r\n"
    b"Content-Length: 2\r\nContent-Type: application/json\r\nAccept-Encoding: gzip\r\n"
)


class _Head:
    """uvicorn's httptools callbacks for the head, and the hot path's header scan (frontend/hot_path.py)."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            pass
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        found = None
        for name, value in self.headers:
            if name in (b"content-length", b"content-type", b"inference-header-content-length"):
                continue
            if name == b"authorization":
                found = value
        self.headers = []
        del found


def _extra_us(
    with_it: Callable[[], object], without: Callable[[], object], number: int, repeat: int = 7
) -> float:
    """Best time per call of ``with_it`` minus that of ``without``, their loops alternating (ABAB...): a
    machine that slows down for a while slows both."""
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        for i, fn in enumerate((with_it, without)):
            best[i] = min(best[i], timeit.timeit(fn, number=number))
    return (best[0] - best[1]) / number * 1e6


def measure(number: int = 50_000) -> dict[str, float]:
    """µs per request: ``header`` (parsing the extra line), ``authorize`` (token route minus public), and
    their ``total``."""
    token, token_id, salt, digest = new_token()
    auth = GatewayAuth(Verifier([TokenRecord(token_id, "local-admin", "admin", salt, digest)]))
    public = Gateway(RoutingTable([Route("tiny", "1", default=True, public=True)]), auth=auth)
    private = Gateway(RoutingTable([Route("tiny", "1", default=True)]), auth=auth)
    line = f"Bearer {token}".encode()
    private.authorize("tiny", None, line.decode("latin-1"))  # warm the verifier's cache, as a gateway's is
    try:
        private.authorize("tiny", None, None)
    except Unauthenticated:
        pass
    else:  # then the difference timed below would not be the check
        raise RuntimeError("the token route let a request without a token in")

    parser = httptools.HttpRequestParser(_Head())
    plain, signed = _HEAD + b"\r\n{}", _HEAD + b"Authorization: " + line + b"\r\n\r\n{}"
    header = _extra_us(lambda: parser.feed_data(signed), lambda: parser.feed_data(plain), number)
    authorize = _extra_us(
        lambda: private.authorize("tiny", None, line.decode("latin-1")),
        lambda: public.authorize("tiny", None, None),
        number,
    )
    return {
        "header_us": round(header, 2),
        "authorize_us": round(authorize, 2),
        "total_us": round(header + authorize, 2),
    }
