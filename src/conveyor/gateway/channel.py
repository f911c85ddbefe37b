"""The gateway side of the internal channel: a few persistent connections, many requests in flight on each.

V2 bodies are forwarded as received (no JSON re-encoding); a broken connection fails its pending requests with
``ConnectionFailed`` so the gateway can retry them on another replica.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, cast

import orjson

from conveyor.errors import ConveyorError, DeadlineExceeded
from conveyor.gateway.upstream import ConnectionFailed
from conveyor.protocol import frames
from conveyor.server.service import EncodedRequest, EncodedResponse
from conveyor.settings import Settings


class _Connection(asyncio.Protocol):
    def __init__(self, address: str) -> None:
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, tuple[asyncio.Future[tuple[int, bytes]], asyncio.TimerHandle | None]] = {}
        self._reader = frames.FrameReader()
        self._ids = itertools.count(1)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        pending, self.pending = self.pending, {}
        for fut, timer in pending.values():
            if timer is not None:
                timer.cancel()
            if not fut.done():
                fut.set_exception(ConnectionFailed(f"connection to replica {self.address} was lost"))

    def data_received(self, data: bytes) -> None:
        try:
            received = self._reader.feed(data)
        except ValueError:
            if self.transport is not None:
                self.transport.close()
            return
        for stream, kind, payload in received:
            entry = self.pending.pop(stream, None)
            if entry is None:
                continue  # it expired: the answer came too late
            fut, timer = entry
            if timer is not None:
                timer.cancel()
            if not fut.done():
                fut.set_result((kind, payload))

    def send(
        self, kind: int, parts: tuple[bytes, ...], timeout_s: float | None
    ) -> asyncio.Future[tuple[int, bytes]]:
        if self.transport is None:
            raise ConnectionFailed(f"connection to replica {self.address} is closed")
        stream = next(self._ids) & 0xFFFFFFFF
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        # A timer handle, not asyncio.wait_for: no extra task per request on the hot path.
        timer = None if timeout_s is None else loop.call_later(timeout_s, self._expire, stream, timeout_s)
        self.pending[stream] = (fut, timer)
        self.transport.writelines(frames.frame(stream, kind, *parts))
        return fut

    def _expire(self, stream: int, timeout_s: float) -> None:
        entry = self.pending.pop(stream, None)
        if entry is not None and not entry[0].done():
            msg = f"replica {self.address} did not answer within {timeout_s:g}s"
            entry[0].set_exception(DeadlineExceeded(msg))


class ChannelUpstream:
    """A replica in another process, reached over ``unix:PATH`` or ``tcp:HOST:PORT``."""

    def __init__(
        self,
        address: str,
        connections: int = 2,
        probe_timeout_s: float = 2.0,
        request_timeout_s: float | None = None,
    ) -> None:
        """``request_timeout_s`` bounds every call: a backstop for a replica that hangs without closing."""
        self.address = address
        self.request_timeout_s = request_timeout_s
        self.probe_timeout_s = probe_timeout_s  # a probe slower than this counts as failed (a hung replica)
        self._where = frames.parse_address(address)
        self._conns: list[_Connection | None] = [None] * connections
        self._next = itertools.cycle(range(connections))
        self._connecting: dict[int, asyncio.Future[_Connection]] = {}

    @classmethod
    def for_settings(cls, address: str, settings: Settings) -> ChannelUpstream:
        """Probes as patient as the health interval allows; the replica answers 504 itself at
        ``request_timeout_ms``, so the gateway's own deadline, a second later, only catches a hung one."""
        probe_timeout = min(2.0, max(0.25, settings.health_interval_s))
        deadline = settings.request_timeout_ms / 1000 + 1.0
        return cls(address, probe_timeout_s=probe_timeout, request_timeout_s=deadline)

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
        try:
            if scheme == "unix":
                _, conn = await loop.create_unix_connection(lambda: _Connection(self.address), where)
            else:
                _, conn = await loop.create_connection(lambda: _Connection(self.address), where, port)
        except OSError as exc:
            raise ConnectionFailed(
                f"cannot connect to replica {self.address}: {exc.strerror or exc}"
            ) from None
        self._conns[i] = conn
        return conn

    async def _call(self, kind: int, *parts: bytes) -> bytes:
        conn = await self._connection()
        rkind, payload = await conn.send(kind, parts, self.request_timeout_s)
        if rkind == frames.ERROR:
            raise frames.decode_error(payload)
        return payload

    async def infer(self, request: EncodedRequest) -> EncodedResponse:
        meta = frames.encode_call(request.model, request.version, request.request_id, request.json_length)
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
