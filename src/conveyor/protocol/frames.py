"""The gateway ⇄ replica channel wire format: length-prefixed frames, many requests in flight per connection.

A frame is ``<payload length u32><stream id u32><kind u8>`` then the payload; V2 bodies travel as received.
PING (no payload) is answered with PONG by the replica's event loop itself, never queued behind inference: the
gateway's liveness check on a connection with requests outstanding (docs/operations.md, "Hung replicas").
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from typing import Any

import orjson

from conveyor import errors
from conveyor.errors import ConveyorError

HEADER = struct.Struct("<IIB")
# Request meta: lengths of model, version, request id (0xFFFF: no version), json_length (-1: none), then
# the length of the traceparent (0: none) that follows the request id.
_REQ_META = struct.Struct("<HHHiB")
# Response meta: json_length (-1: none), lengths of request id and model version (0xFFFF: none).
_RESP_META = struct.Struct("<iHH")
_NONE16 = 0xFFFF
MAX_FRAME = 1 << 31

INFER, METADATA, MODEL_READY, HEALTH, PING = 1, 2, 3, 4, 5
METRICS = 6  # no payload; answered with the replica's Prometheus text (the control plane scrapes it)
OK, ERROR, PONG = 0x80, 0x81, 0x82


def frame(stream: int, kind: int, *parts: bytes) -> list[bytes]:
    """A frame as buffers for ``transport.writelines`` (the body is never copied into a new bytes)."""
    return [HEADER.pack(sum(len(p) for p in parts), stream, kind), *parts]


@dataclass(frozen=True, slots=True)
class Call:
    """A decoded request frame's meta; ``body`` is the V2 body for INFER and empty otherwise."""

    model: str
    version: str | None
    request_id: str
    json_length: int | None
    body: bytes
    traceparent: str | None = None


def encode_call(
    model: str, version: str | None, request_id: str, json_length: int | None, traceparent: str | None = None
) -> bytes:
    m, r = model.encode(), request_id.encode()
    v = b"" if version is None else version.encode()
    t = b"" if traceparent is None else traceparent.encode()[:255]
    meta = _REQ_META.pack(
        len(m),
        _NONE16 if version is None else len(v),
        len(r),
        -1 if json_length is None else json_length,
        len(t),
    )
    return meta + m + v + r + t


def decode_call(payload: bytes) -> Call:
    lm, lv, lr, jl, lt = _REQ_META.unpack_from(payload)
    at = _REQ_META.size
    model = payload[at : at + lm].decode()
    at += lm
    version = None
    if lv != _NONE16:
        version = payload[at : at + lv].decode()
        at += lv
    rid = payload[at : at + lr].decode()
    at += lr
    traceparent = payload[at : at + lt].decode() if lt else None
    return Call(model, version, rid, None if jl < 0 else jl, payload[at + lt :], traceparent)


def encode_reply(json_length: int | None, request_id: str, model_version: str | None) -> bytes:
    r = request_id.encode()
    v = b"" if model_version is None else model_version.encode()
    lv = _NONE16 if model_version is None else len(v)
    return _RESP_META.pack(-1 if json_length is None else json_length, len(r), lv) + r + v


def decode_reply(payload: bytes) -> tuple[bytes, int | None, str, str | None]:
    """(body, json_length, request id, model version) of an INFER reply."""
    jl, lr, lv = _RESP_META.unpack_from(payload)
    at = _RESP_META.size
    rid = payload[at : at + lr].decode()
    at += lr
    version = None
    if lv != _NONE16:
        version = payload[at : at + lv].decode()
        at += lv
    return payload[at:], None if jl < 0 else jl, rid, version


def encode_error(exc: ConveyorError) -> bytes:
    doc: dict[str, Any] = {"code": exc.code, "message": exc.message, "type": type(exc).__name__}
    if isinstance(exc, errors.Overloaded):
        doc["retry_after_s"] = exc.retry_after_s
    return orjson.dumps(doc)


def decode_error(payload: bytes) -> ConveyorError:
    """The replica's error as the same ``conveyor.errors`` class, so each front end maps it as if local."""
    doc = orjson.loads(payload)
    cls = getattr(errors, str(doc.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, ConveyorError)):
        cls = ConveyorError
    message = str(doc.get("message", "replica error"))
    if cls is errors.Overloaded:
        return errors.Overloaded(message, retry_after_s=float(doc.get("retry_after_s", 1.0)))
    return cls(message)


class Outbox:
    """Frames for one connection: the first of a turn of the event loop leaves at once, the ones that follow
    in the same turn leave together when it ends.

    Under load many requests (or answers) for the same connection are produced in one turn; writing each at
    once costs a system call, and a wake-up of the peer, per frame. A lone frame, though, is on the critical
    path of its request: it is written immediately, and only what comes after it in the turn is held back.
    """

    __slots__ = ("_busy", "_frames", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport: asyncio.Transport | None = transport
        self._frames: list[bytes] = []
        self._busy = False  # a frame left in this turn: the next ones wait for its end
        self._loop = asyncio.get_running_loop()

    def put(self, frame: list[bytes]) -> None:
        if self._busy:
            self._frames += frame
            return
        self._busy = True
        self._loop.call_soon(self._flush)
        self._write(frame)

    def _flush(self) -> None:
        out, self._frames = self._frames, []
        self._busy = False
        if out:
            self._write(out)

    def _write(self, frames: list[bytes]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.writelines(frames)

    def discard(self) -> None:
        """The connection is gone or given up: nothing more is written."""
        self._transport = None
        self._frames = []


class FrameReader:
    """Splits a byte stream into frames; feed it what ``data_received`` gets."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        buf = self._buf
        buf += data
        frames: list[tuple[int, int, bytes]] = []
        at, end = 0, len(buf)
        while end - at >= HEADER.size:
            length, stream, kind = HEADER.unpack_from(buf, at)
            if length > MAX_FRAME:
                raise ValueError(f"frame of {length} bytes is larger than {MAX_FRAME}")
            start = at + HEADER.size
            if end - start < length:
                break
            # One copy out of the buffer (a bytearray slice would be a second one); the view is a temporary,
            # released before ``del buf[...]`` resizes the buffer.
            frames.append((stream, kind, bytes(memoryview(buf)[start : start + length])))
            at = start + length
        if at:
            del buf[:at]
        return frames


def parse_address(address: str) -> tuple[str, str, int]:
    """``unix:/path.sock`` → ("unix", path, 0); ``tcp:host:port`` → ("tcp", host, port)."""
    scheme, _, rest = address.partition(":")
    if scheme == "unix" and rest:
        return "unix", rest, 0
    host, _, port = rest.rpartition(":")
    if scheme == "tcp" and host and port.isdigit():
        return "tcp", host, int(port)
    raise errors.InvalidInput(f"channel address must be unix:PATH or tcp:HOST:PORT, got {address!r}")
