"""A fake replica upstream for gateway unit tests: no sockets, behaviour set per test."""

from __future__ import annotations

import asyncio
from typing import Any

from conveyor.protocol.service import EncodedRequest, EncodedResponse


class FakeUpstream:
    """Answers with its own address; ``fail_with`` makes every call raise; ``healthy`` drives probes;
    ``gate``, when set, holds every request until it is set."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.fail_with: Exception | None = None
        self.healthy = True
        self.gate: asyncio.Event | None = None
        self.seen: list[EncodedRequest] = []
        self.metadata_calls = 0
        self.closed = 0

    local = False

    def admit(self, name: str, version: str | None) -> None:
        pass

    async def infer(self, request: EncodedRequest) -> EncodedResponse:
        self.seen.append(request)
        await asyncio.sleep(0)  # a real upstream always suspends: requests sent together overlap
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return EncodedResponse(self.address.encode(), None, request.request_id, request.version)

    async def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        self.metadata_calls += 1
        return {"name": name, "version": version, "versions": ["only-mine"]}

    async def model_ready(self, name: str, version: str | None) -> dict[str, Any]:
        return {"name": name, "ready": True}

    async def probe(self) -> bool:
        return self.healthy

    async def close(self) -> None:
        self.closed += 1
