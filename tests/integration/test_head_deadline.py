"""The deadlines of frontend/connections.py over real loopback sockets: an idle connection is closed after
the keep-alive timeout, a stalled request head after the head timeout (from the connection opening or from
the head's first byte), and a request that reached the socket before its deadline is answered even when the
event loop was held up past that deadline (libuv runs due timers before it reads: the close came first and
the client saw "Server disconnected without sending a response")."""

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

IDLE_S = 3  # timeout_keep_alive
HEAD_S = 1  # head_timeout_s
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
HOLD = b"HOLD"  # a connection that sends this holds the event loop inside its read callback
HOLD_S = IDLE_S + 0.8
SLACK_S = 1.5  # a loaded 2-core machine


class HoldingProtocol(DeadlineHttpProtocol):
    """Holds the loop in an I/O callback, as a stalled process or a long callback would."""

    head_timeout_s = HEAD_S

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


def test_an_idle_connection_lasts_the_keep_alive_timeout_and_a_stalled_head_the_head_timeout(
    port: int,
) -> None:
    with (
        socket.create_connection(("127.0.0.1", port)) as idle,
        socket.create_connection(("127.0.0.1", port)) as stalled,
        socket.create_connection(("127.0.0.1", port)) as silent,
    ):
        ask(idle)
        ask(stalled)
        start = time.monotonic()
        stalled.sendall(b"GET / HT")  # its head has HEAD_S from here, not the IDLE_S of an idle connection
        assert answer_of(stalled, start + HEAD_S + SLACK_S) == (None, b"")
        assert answer_of(silent, start + HEAD_S + SLACK_S) == (None, b"")  # opened, never sent a byte
        assert time.monotonic() - start < IDLE_S
        idle.settimeout(0.2)
        with pytest.raises(TimeoutError):
            idle.recv(1)  # still open
        assert answer_of(idle, start + IDLE_S + HEAD_GRACE_S + SLACK_S) == (None, b"")
        assert time.monotonic() - start >= IDLE_S - 0.1


def test_bytes_that_arrive_at_the_deadline_buy_one_short_grace_not_a_new_deadline(port: int) -> None:
    with (
        socket.create_connection(("127.0.0.1", port)) as slow,
        socket.create_connection(("127.0.0.1", port)) as holder,
    ):
        slow.sendall(b"GET / HT")  # the head deadline runs from the connection's opening
        holder.sendall(HOLD)  # the loop is held past it; more bytes arrive meanwhile, still no head
        time.sleep(0.3)
        slow.sendall(b"TP/1.1\r\n")
        start = time.monotonic()
        assert answer_of(slow, start + HOLD_S + HEAD_GRACE_S + SLACK_S) == (None, b"")
        assert time.monotonic() - start < HOLD_S + HEAD_GRACE_S + 1
