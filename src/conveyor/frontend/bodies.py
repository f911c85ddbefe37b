"""Reading request bodies: a size limit, a read deadline, and a memory budget shared by all connections.

A client that declares a large body and stalls would otherwise hold its connection, and the bytes it did send,
forever; sixteen of them took a gateway to 1 GB. So a body must keep arriving (no gap longer than
``body_idle_timeout_s``) and be complete within ``body_timeout_s``; the bytes of bodies being read or served
at once stay within ``body_budget_bytes`` for the whole process (a new body that does not fit is refused with
503 + Retry-After before anything is read). The declared Content-Length is reserved from the budget, never
allocated: memory grows only with the bytes that arrive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import Request

from conveyor.errors import InvalidInput
from conveyor.frontend.malloc import MemoryReturn
from conveyor.settings import Settings

log = logging.getLogger("conveyor.frontend.bodies")
# The connection cannot carry another request after an unread body: tell the client, and uvicorn, to close.
_CLOSE = {"connection": "close"}
CLOSING_IDLE_S = 1.0  # at shutdown: the longest gap in a body still arriving
CLOSING_TOTAL_S = 10.0  # at shutdown: bodies still arriving must be in within this (graceful stop: 30 s)


class ClientGone(Exception):
    """The client closed its connection before its body arrived: nothing to answer, not an error."""


class BodyBudget:
    """Bytes of request bodies this process holds at once, across every connection."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def reserve(self, n: int) -> bool:
        if self.held + n > self.limit:
            return False
        self.held += n
        return True

    def release(self, n: int) -> None:
        self.held -= n

    def refusal(self) -> str:
        """What a client refused for want of room is told."""
        return f"too many request bodies in flight ({self.held} of {self.limit} bytes held); retry later"


@dataclass(eq=False)
class _Reading:
    """One body being read: its deadline (the next byte's, capped by the whole body's), which shutdown
    moves closer."""

    timeout: asyncio.Timeout
    end: float  # loop time by which the whole body must be in
    last: float  # loop time of the last chunk (or of the headers)
    reserved: int = 0  # bytes of the budget this body holds


class BodyReader:
    """Reads the bodies of one process's V2 REST app; ``close`` ends every read still waiting (shutdown)."""

    def __init__(
        self,
        *,
        max_bytes: int,
        budget_bytes: int,
        idle_timeout_s: float,
        timeout_s: float,
        memory: MemoryReturn | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.budget = BodyBudget(budget_bytes)
        self.idle_timeout_s = idle_timeout_s
        self.timeout_s = timeout_s
        self.memory = memory or MemoryReturn()
        self._reading: set[_Reading] = set()
        self._closing_at: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> BodyReader:
        return cls(
            max_bytes=settings.max_body_bytes,
            budget_bytes=settings.body_budget_bytes,
            idle_timeout_s=settings.body_idle_timeout_s,
            timeout_s=settings.body_timeout_s,
        )

    def close(self) -> None:
        """Shutdown: bodies still arriving may finish (their requests were accepted), but under shorter
        deadlines — no gap over CLOSING_IDLE_S, complete within CLOSING_TOTAL_S — else 503 and the
        connection closed, so a stalled upload cannot hold the graceful stop (30 s) until uvicorn cancels
        it into a 500."""
        self._closing_at = asyncio.get_running_loop().time()
        for reading in self._reading:
            reading.timeout.reschedule(self._deadline(reading))

    def _deadline(self, reading: _Reading) -> float:
        if self._closing_at is None:
            return min(reading.end, reading.last + self.idle_timeout_s)
        end = min(reading.end, self._closing_at + CLOSING_TOTAL_S)
        return min(end, reading.last + min(self.idle_timeout_s, CLOSING_IDLE_S))

    @asynccontextmanager
    async def body(self, request: Request) -> AsyncIterator[bytes]:
        """The whole body, its bytes counted against the budget until the block ends (the answer is built)."""
        declared = _declared_length(request)
        if declared is not None and declared > self.max_bytes:
            raise _too_large(f"request body of {declared} bytes exceeds the limit of {self.max_bytes} bytes")
        now = asyncio.get_running_loop().time()
        reading = _Reading(asyncio.timeout(None), end=now + self.timeout_s, last=now)
        if declared is not None:
            if not self.budget.reserve(declared):
                raise _over_budget(self.budget)
            reading.reserved = declared
        try:
            yield await self._read(request, reading, grow=declared is None)
        finally:
            self.budget.release(reading.reserved)
            self.memory.released(reading.reserved)

    async def _read(self, request: Request, reading: _Reading, grow: bool) -> bytes:
        """Read under ``reading``'s deadline; a body without Content-Length (``grow``) reserves as its
        chunks arrive."""
        loop = asyncio.get_running_loop()
        chunks: list[bytes] = []
        total = 0
        try:
            async with reading.timeout:
                reading.timeout.reschedule(self._deadline(reading))
                self._reading.add(reading)  # from here until the timeout exits: close() reschedules it
                try:
                    while True:
                        message = await request.receive()
                        if message["type"] == "http.disconnect":
                            raise ClientGone
                        chunk: bytes = message.get("body", b"")
                        total += len(chunk)
                        if total > self.max_bytes:
                            raise _too_large(f"request body exceeds the limit of {self.max_bytes} bytes")
                        if total > reading.reserved:
                            if not grow:  # more than Content-Length declared: httptools refuses it first
                                raise InvalidInput("request body is longer than its Content-Length")
                            if not self.budget.reserve(total - reading.reserved):
                                raise _over_budget(self.budget)
                            reading.reserved = total
                        if chunk:
                            chunks.append(chunk)
                        if not message.get("more_body", False):
                            break
                        reading.last = loop.time()
                        reading.timeout.reschedule(self._deadline(reading))
                finally:
                    self._reading.discard(reading)
        except TimeoutError:
            if self._closing_at is not None:
                raise _shutting_down() from None
            log.info("request body not received in time (%d bytes arrived); answered 408", total)
            raise HTTPException(
                408,
                f"request body not received in time: no data for {self.idle_timeout_s:g}s "
                f"or not complete within {self.timeout_s:g}s ({total} bytes arrived)",
                headers=_CLOSE,
            ) from None
        return b"".join(chunks)  # one chunk comes back as is, no copy


def _declared_length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if not declared.isdigit():
        raise InvalidInput(f"Content-Length must be an integer, got {declared!r}")
    return int(declared)


def _too_large(message: str) -> HTTPException:
    return HTTPException(413, message, headers=_CLOSE)


def _over_budget(budget: BodyBudget) -> HTTPException:
    return HTTPException(
        503,
        budget.refusal(),
        headers={**_CLOSE, "retry-after": "1"},
    )


def _shutting_down() -> HTTPException:
    return HTTPException(503, "the server is shutting down; retry on another", headers=_CLOSE)
