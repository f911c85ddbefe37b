"""Channel candidate measured against the framed channel: HTTP/1.1 keep-alive to a replica's REST port.

A raw asyncio client (httptools parser, one request per connection at a time, idle connections reused);
kept here, not in the package, because the framed channel won the measurement (docs/serving.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools

from conveyor.gateway.upstream import ConnectionFailed
from conveyor.protocol.service import EncodedRequest, EncodedResponse


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, dict[bytes, bytes], bytes]] | None = None
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionFailed("connection lost"))

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.waiter is not None
        self.waiter.set_result((self.parser.get_status_code(), self.headers, b"".join(self.body)))
        self.headers, self.body = {}, []


class HttpUpstream:
    local = False

    def __init__(self, host: str, port: int) -> None:
        self.address = f"http://{host}:{port}"
        self._host, self._port = host, port
        self._idle: list[_Conn] = []

    def admit(self, name: str, version: str | None) -> None:
        pass

    async def infer(self, request: EncodedRequest) -> EncodedResponse:
        conn = self._idle.pop() if self._idle else None
        if conn is None or conn.transport is None:
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(_Conn, self._host, self._port)
        path = f"/v2/models/{request.model}" + (f"/versions/{request.version}" if request.version else "")
        head = (
            f"POST {path}/infer HTTP/1.1\r\nhost: replica\r\ncontent-length: {len(request.body)}\r\n"
            f"content-type: application/json\r\nx-request-id: {request.request_id}\r\n"
        )
        if request.json_length is not None:
            head += f"inference-header-content-length: {request.json_length}\r\n"
        conn.waiter = asyncio.get_running_loop().create_future()
        assert conn.transport is not None
        conn.transport.writelines([head.encode() + b"\r\n", request.body])
        status, headers, body = await conn.waiter
        self._idle.append(conn)
        if status != 200:
            raise RuntimeError(f"replica answered {status}: {body[:200]!r}")
        jl = headers.get(b"inference-header-content-length")
        return EncodedResponse(body, int(jl) if jl else None, request.request_id, request.version)

    async def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        return {"name": name}

    async def model_ready(self, name: str, version: str | None) -> dict[str, Any]:
        return {"name": name, "ready": True}

    async def probe(self) -> bool:
        return True

    async def close(self) -> None:
        for c in self._idle:
            if c.transport is not None:
                c.transport.close()
