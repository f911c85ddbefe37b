"""uvicorn's httptools protocol with two deadlines, so no connection idles or stalls forever, and a cap on the
connections one client address may hold.

uvicorn arms its keep-alive timer only after a response, and disarms it on the first byte that arrives: a
connection that never sends a request, or sends half a request line and stops, stays open for good (one
file descriptor and one protocol object each). Here:

- an idle connection (no byte since its last answer) is closed after ``timeout_keep_alive``
  (``keep_alive_timeout_s``, 75 s: longer than the idle timeout of the load balancers a gateway sits behind,
  60 s on AWS's, so they close first and never send a request on a connection the gateway is closing);
- a request head must be complete within ``head_timeout_s`` (10 s) of the connection opening or of its first
  byte after an answer, or the connection is closed without an answer.

Bytes that reached the socket by a deadline but not yet the protocol (the event loop was held up: libuv runs
due timers before it reads) are not late: the connection gets ``HEAD_GRACE_S`` more for them to be read.

The deadlines bound how long a connection lives idle, not how many one client opens: ``limit_per_client``
answers a client address over ``max_connections_per_client`` 429 with Retry-After and closes the new
connection, before uvicorn allocates anything for it.
"""

from __future__ import annotations

import asyncio
import logging
import select
from typing import TYPE_CHECKING, Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from conveyor.settings import Settings

log = logging.getLogger("conveyor.frontend")
REFUSED_LINGER_S = 1.0
"""How long a refused connection stays open for its client to send a request and read the 429."""
HEAD_GRACE_S = 0.1
"""How much longer a connection whose bytes wait unread at its head deadline has for them to make a head."""


class DeadlineHttpProtocol(HttpToolsProtocol):
    head_timeout_s: float = 10.0  # the server's head_timeout_s (connection_protocol)
    _head_timer: asyncio.TimerHandle | None = None
    _idle = False  # the timer running is the keep-alive one: no byte since the last answer
    _awaiting_head = False  # bytes of a head came after an idle spell, the head is not complete yet
    _head_grace = False  # the deadline passed with bytes unread: this is the short second look

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline(self.head_timeout_s)

    def data_received(self, data: bytes) -> None:
        if not self._idle:
            super().data_received(data)
            return
        # The first bytes after an answer: no longer idle. The head has head_timeout_s from here, armed only
        # when this read did not bring all of it (most do: no timer is made for them).
        self._cancel_head_deadline()
        self._awaiting_head = True
        super().data_received(data)
        if self._awaiting_head and self._head_timer is None and not self.transport.is_closing():
            self._arm_head_deadline(self.head_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._cancel_head_deadline()  # from here the body reader's deadlines apply
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_deadline(self.timeout_keep_alive, idle=True)

    def timeout_keep_alive_handler(self) -> None:
        """uvicorn's idle close, armed with ours and for the same time: ours, which looks at the socket
        first, decides alone."""

    def _arm_head_deadline(self, after_s: float, idle: bool = False) -> None:
        self._cancel_head_deadline()
        self._idle, self._head_grace = idle, False
        self._head_timer = self.loop.call_later(after_s, self._head_deadline_passed)

    def _cancel_head_deadline(self) -> None:
        self._idle = self._awaiting_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_deadline_passed(self) -> None:
        self._head_timer = None
        # A pipelined request whose head already arrived is being served: not idle.
        busy = self.cycle is not None and not self.cycle.response_complete
        if busy or self.pipeline or self.transport.is_closing():
            return
        if not self._head_grace and self._unread():
            self._head_grace = True
            self._head_timer = self.loop.call_later(HEAD_GRACE_S, self._head_deadline_passed)
            return
        self.transport.close()

    def _unread(self) -> bool:
        """Whether bytes (or the client's close) wait in the socket, not yet read by the loop."""
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return False
        poller = select.poll()  # not select.select: a server's descriptors pass 1024
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))


def _refusal(limit: int) -> bytes:
    body = orjson.dumps(
        {"error": f"too many connections from this client (limit {limit}: max_connections_per_client)"}
    )
    head = (
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


def connection_protocol(protocol: type[DeadlineHttpProtocol], settings: Settings) -> type[HttpToolsProtocol]:
    """``protocol`` with the head deadline and the connections per client of ``settings``; the idle
    deadline is uvicorn's ``timeout_keep_alive`` (``keep_alive_timeout_s``)."""
    timed = type(protocol.__name__, (protocol,), {"head_timeout_s": float(settings.head_timeout_s)})
    return limit_per_client(timed, settings.max_connections_per_client)


def limit_per_client(protocol: type[HttpToolsProtocol], limit: int) -> type[HttpToolsProtocol]:
    """``protocol`` with at most ``limit`` open connections per client IP address (0: no limit). Connections
    without an IP address (Unix sockets) are not counted."""
    if limit <= 0:
        return protocol
    open_by_client: dict[str, int] = {}
    refusal = _refusal(limit)

    class PerClientLimit(protocol):  # type: ignore[valid-type,misc]
        _counted: str | None = None  # the client address this connection counts against
        _refused: asyncio.TimerHandle | None = None  # closes a refused connection

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            peer: Any = transport.get_extra_info("peername")
            client = peer[0] if isinstance(peer, tuple) and peer else None
            if client is not None:
                held = open_by_client.get(client, 0)
                if held >= limit:
                    self._refuse(transport, client, held)
                    return
                open_by_client[client] = held + 1
                self._counted = client
            super().connection_made(transport)

        def _refuse(self, transport: asyncio.Transport, client: str, held: int) -> None:
            # One line per burst: observe/logs.py folds repeats of this template into one count.
            log.warning(
                "refused a connection from %s: it holds %d, the limit per client is %d "
                "(max_connections_per_client)",
                client,
                held,
                limit,
            )
            self.transport = transport
            transport.write(refusal)  # read by the client once it sends its request
            self._refused = self.loop.call_later(REFUSED_LINGER_S, transport.close)

        def data_received(self, data: bytes) -> None:
            if self._refused is not None:  # its request has come: the answer is already on its way
                self.transport.close()
                return
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._refused is not None:
                self._refused.cancel()
                return  # uvicorn never knew of it
            client, self._counted = self._counted, None
            if client is not None:
                left = open_by_client[client] - 1
                if left:
                    open_by_client[client] = left
                else:
                    del open_by_client[client]
            super().connection_lost(exc)

    PerClientLimit.__name__ = protocol.__name__
    return PerClientLimit
