"""The head deadline of frontend/connections.py over real loopback sockets: an idle connection and a stalled
request line are closed in time, and a request that reached the socket before its deadline is answered even
when the event loop was held up past that deadline (the CI failure of a version change under load: libuv
runs due timers before it reads, so the close came first and the client saw "Server disconnected")."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from conveyor.frontend.connections import HEAD_GRACE_S, DeadlineHttpProtocol
from tests.fixtures.processes import free_port
from tests.fixtures.raw_http import answer_of

IDLE_S = 1
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
HOLD = b"HOLD"  # a connection that sends this holds the event loop inside its read callback
HOLD_S = IDLE_S + 0.8


class HoldingProtocol(DeadlineHttpProtocol):
    """Holds the loop in an I/O callback, as a stalled process or a long callback would."""

    def data_received(self, data: bytes) -> None:
        if data.startswith(HOLD):
            time.sleep(HOLD_S)
            self.transport.close()
            return
        super().data_received(data)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def port() -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http=HoldingProtocol,
        timeout_keep_alive=IDLE_S,
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def ask(sock: socket.socket) -> bytes:
    sock.sendall(REQUEST)
    sock.settimeout(5)
    data = b""
    while not data.endswith(b"\r\n\r\nok"):
        chunk = sock.recv(4096)
        assert chunk, f"closed without an answer after {data!r}"
        data += chunk
    return data


def test_a_request_sent_before_its_deadline_is_answered_though_the_loop_read_it_late(port: int) -> None:
    with (
        socket.create_connection(("127.0.0.1", port)) as client,
        socket.create_connection(("127.0.0.1", port)) as holder,
    ):
        assert ask(client).startswith(b"HTTP/1.1 200")  # its head deadline runs from here
        holder.sendall(HOLD)
        time.sleep(0.3)  # the loop is held; this request waits in the socket past the deadline
        assert ask(client).startswith(b"HTTP/1.1 200")


def test_an_idle_connection_and_a_stalled_request_line_are_still_closed_in_time(port: int) -> None:
    with (
        socket.create_connection(("127.0.0.1", port)) as idle,
        socket.create_connection(("127.0.0.1", port)) as stalled,
    ):
        ask(idle)
        stalled.sendall(b"GET / HT")
        start = time.monotonic()
        deadline = start + IDLE_S + HEAD_GRACE_S + 2
        assert answer_of(idle, deadline) == (None, b"")
        assert answer_of(stalled, deadline) == (None, b"")
        assert time.monotonic() - start < IDLE_S + HEAD_GRACE_S + 1


def test_bytes_that_arrive_at_the_deadline_buy_one_short_grace_not_a_new_deadline(port: int) -> None:
    with (
        socket.create_connection(("127.0.0.1", port)) as slow,
        socket.create_connection(("127.0.0.1", port)) as holder,
    ):
        ask(slow)
        holder.sendall(HOLD)
        time.sleep(0.3)
        slow.sendall(b"GET / HT")  # unread when the deadline fires; still no head after the grace
        start = time.monotonic()
        assert answer_of(slow, start + HOLD_S + HEAD_GRACE_S + 2) == (None, b"")
        assert time.monotonic() - start < HOLD_S + HEAD_GRACE_S + 1
