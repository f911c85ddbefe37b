"""The gateway side of the internal channel: a few persistent connections, many requests in flight on each.

V2 bodies are forwarded as received (no JSON re-encoding); a broken connection fails its pending requests with
``ConnectionFailed``, and a hung replica (a ping unanswered) with ``ReplicaUnresponsive``, so the gateway can
retry them on another replica.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, cast

import orjson

from conveyor.errors import ConveyorError, DeadlineExceeded
from conveyor.gateway.upstream import ConnectionFailed, ReplicaUnresponsive
from conveyor.protocol import frames
from conveyor.protocol.service import EncodedRequest, EncodedResponse
from conveyor.settings import Settings

_NEVER = float("inf")


class _Connection(asyncio.Protocol):
    """One connection and its requests in flight, with one timer that runs only while some are.

    The timer does two jobs, so no request carries a timer of its own: liveness (nothing received for
    ``ping_after_s`` while requests are outstanding: send a PING; no frame back within ``pong_timeout_s``: the
    replica is hung, every pending request fails with ``ReplicaUnresponsive``) and the per-attempt deadline
    (``timeout_s``). Every request on a connection has the same timeout, so the oldest pending (dicts keep
    insertion order) is always the next to expire.
    """

    def __init__(
        self, address: str, timeout_s: float | None, ping_after_s: float, pong_timeout_s: float
    ) -> None:
        self.address = address
        self.transport: asyncio.Transport | None = None
        self._outbox: frames.Outbox | None = None
        self.pending: dict[int, tuple[asyncio.Future[tuple[int, bytes]], float]] = {}
        self._timeout_s = timeout_s
        self._ping_after_s = ping_after_s
        self._pong_timeout_s = pong_timeout_s
        self._first_wake_s = min(ping_after_s, _NEVER if timeout_s is None else timeout_s)
        self._reader = frames.FrameReader()
        self._ids = itertools.count(1)
        self._loop = asyncio.get_running_loop()
        self._last_received = 0.0
        self._ping_sent: float | None = None  # when the unanswered ping went out
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        self._outbox = frames.Outbox(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._outbox is not None:
            self._outbox.discard()
        self._fail_pending(ConnectionFailed(f"connection to replica {self.address} was lost"))

    def _fail_pending(self, exc: ConveyorError) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self.pending = self.pending, {}
        for fut, _ in pending.values():
            if not fut.done():
                fut.set_exception(exc)

    def data_received(self, data: bytes) -> None:
        # Any frame is proof of life, a PONG or an answer: the liveness check pings only an idle connection.
        self._last_received = self._loop.time()
        self._ping_sent = None
        try:
            received = self._reader.feed(data)
        except ValueError:
            if self.transport is not None:
                self.transport.close()
            return
        for stream, kind, payload in received:
            entry = self.pending.pop(stream, None)
            if entry is None:
                continue  # a PONG, or an answer that came after its deadline
            fut = entry[0]
            if not fut.done():
                fut.set_result((kind, payload))

    def send(self, kind: int, parts: tuple[bytes, ...]) -> asyncio.Future[tuple[int, bytes]]:
        if self.transport is None:
            raise ConnectionFailed(f"connection to replica {self.address} is closed")
        stream = next(self._ids) & 0xFFFFFFFF
        now = self._loop.time()
        fut: asyncio.Future[tuple[int, bytes]] = self._loop.create_future()
        self.pending[stream] = (fut, _NEVER if self._timeout_s is None else now + self._timeout_s)
        if self._timer is None:  # the connection was idle: start watching it
            self._last_received = now
            self._timer = self._loop.call_at(now + self._first_wake_s, self._tick)
        assert self._outbox is not None  # set with the transport
        self._outbox.put(frames.frame(stream, kind, *parts))
        return fut

    def _tick(self) -> None:
        self._timer = None
        if self.transport is None:
            return
        now, pending = self._loop.time(), self.pending
        while pending:
            stream, (fut, deadline) = next(iter(pending.items()))
            if deadline > now:
                break
            del pending[stream]
            if not fut.done():
                msg = f"replica {self.address} did not answer within {self._timeout_s:g}s"
                fut.set_exception(DeadlineExceeded(msg))
        if not pending:
            self._ping_sent = None
            return
        if self._ping_sent is not None:
            if now - self._ping_sent >= self._pong_timeout_s:
                self._hung()
                return
            wake = self._ping_sent + self._pong_timeout_s
        elif now - self._last_received >= self._ping_after_s:
            self._ping_sent = now
            self.transport.writelines(frames.frame(0, frames.PING))  # now: it is the only frame due
            wake = now + self._pong_timeout_s
        else:
            wake = self._last_received + self._ping_after_s
        oldest_deadline = next(iter(pending.values()))[1]
        self._timer = self._loop.call_at(min(wake, oldest_deadline), self._tick)

    def _hung(self) -> None:
        transport, self.transport = self.transport, None  # no new request goes to it
        if self._outbox is not None:
            self._outbox.discard()
        msg = f"replica {self.address} did not answer a ping within {self._pong_timeout_s:g}s: hung"
        self._fail_pending(ReplicaUnresponsive(msg))
        if transport is not None:
            transport.abort()  # not close(): a stopped peer never reads what is still buffered


class ChannelUpstream:
    """A replica in another process, reached over ``unix:PATH`` or ``tcp:HOST:PORT``."""

    local = False

    def __init__(
        self,
        address: str,
        connections: int = 2,
        probe_timeout_s: float = 2.0,
        request_timeout_s: float | None = None,
        ping_after_s: float = 0.25,
        pong_timeout_s: float = 1.0,
    ) -> None:
        """``request_timeout_s`` bounds every call (the per-attempt deadline, an outer bound); a replica that
        stops answering is found sooner by the liveness check: ``ping_after_s`` of silence while requests are
        outstanding sends a ping, and ``pong_timeout_s`` without an answer fails them as retryable."""
        self.address = address
        self.request_timeout_s = request_timeout_s
        self.ping_after_s = ping_after_s
        self.pong_timeout_s = pong_timeout_s
        self.probe_timeout_s = probe_timeout_s  # a probe slower than this counts as failed (a hung replica)
        self._where = frames.parse_address(address)
        self._conns: list[_Connection | None] = [None] * connections
        self._next = itertools.cycle(range(connections))
        self._connecting: dict[int, asyncio.Future[_Connection]] = {}

    def admit(self, name: str, version: str | None) -> None:
        """Never refuses: only the replica knows its queue (the gateway marks it full when it says so)."""

    @classmethod
    def for_settings(cls, address: str, settings: Settings) -> ChannelUpstream:
        """Probes as patient as the health interval allows; the replica answers 504 itself at
        ``request_timeout_ms``, so the gateway's own deadline, a second later, only catches a replica whose
        event loop answers pings but not its requests."""
        return cls(
            address,
            probe_timeout_s=min(2.0, max(0.25, settings.health_interval_s)),
            request_timeout_s=settings.request_timeout_ms / 1000 + 1.0,
            ping_after_s=settings.channel_ping_after_ms / 1000,
            pong_timeout_s=settings.channel_pong_timeout_ms / 1000,
        )

    async def _connection(self) -> _Connection:
        i = next(self._next)
        conn = self._conns[i]
        if conn is not None and conn.transport is not None:
            return conn
        if i not in self._connecting:  # one dial per slot, however many requests are waiting for it
            self._connecting[i] = asyncio.ensure_future(self._dial(i))
        try:
            return await asyncio.shield(self._connecting[i])
        finally:
            self._connecting.pop(i, None)

    async def _dial(self, i: int) -> _Connection:
        loop = asyncio.get_running_loop()
        scheme, where, port = self._where

        def protocol() -> _Connection:
            return _Connection(self.address, self.request_timeout_s, self.ping_after_s, self.pong_timeout_s)

        try:
            if scheme == "unix":
                _, conn = await loop.create_unix_connection(protocol, where)
            else:
                _, conn = await loop.create_connection(protocol, where, port)
        except OSError as exc:
            raise ConnectionFailed(
                f"cannot connect to replica {self.address}: {exc.strerror or exc}"
            ) from None
        self._conns[i] = conn
        return conn

    async def _call(self, kind: int, *parts: bytes) -> bytes:
        conn = await self._connection()
        rkind, payload = await conn.send(kind, parts)
        if rkind == frames.ERROR:
            raise frames.decode_error(payload)
        return payload

    async def infer(self, request: EncodedRequest) -> EncodedResponse:
        meta = frames.encode_call(
            request.model, request.version, request.request_id, request.json_length, request.traceparent
        )
        payload = await self._call(frames.INFER, meta, request.body)
        body, json_length, request_id, version = frames.decode_reply(payload)
        return EncodedResponse(body, json_length, request_id, version)

    async def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        meta = frames.encode_call(name, version, "", None)
        doc: dict[str, Any] = orjson.loads(await self._call(frames.METADATA, meta))
        return doc

    async def model_ready(self, name: str, version: str | None) -> dict[str, Any]:
        meta = frames.encode_call(name, version, "", None)
        doc: dict[str, Any] = orjson.loads(await self._call(frames.MODEL_READY, meta))
        return doc

    async def probe(self) -> bool:
        try:
            return await asyncio.wait_for(self._call(frames.HEALTH), self.probe_timeout_s) == b"1"
        except (ConveyorError, TimeoutError):
            return False

    async def close(self) -> None:
        for conn in self._conns:
            if conn is not None and conn.transport is not None:
                conn.transport.close()
        self._conns = [None] * len(self._conns)
