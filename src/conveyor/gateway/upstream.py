"""Gateway upstreams: one interface, whether the replica is in this process or behind the channel."""

from __future__ import annotations

from typing import Any, Protocol

from conveyor.errors import ConveyorError, Unavailable
from conveyor.protocol.service import EncodedRequest, EncodedResponse, InferenceService


class ConnectionFailed(Unavailable):
    """The replica was unreachable or its connection broke before it answered: safe to retry elsewhere."""


class ReplicaUnresponsive(ConnectionFailed):
    """The replica stopped answering (a missed ping, not a slow inference): retry elsewhere, eject it now."""


class Upstream(Protocol):
    """A replica as the gateway sees it. Errors are ``conveyor.errors`` exceptions, as a DataPlane raises."""

    address: str
    local: bool
    """In this process: ``admit`` knows the replica's queue exactly (it frees when the worker takes a batch,
    before the results are back), so the gateway never needs to mark it full."""

    def admit(self, name: str, version: str | None) -> None:
        """Overloaded when the replica would refuse a request now, if it can tell without a hop (in this
        process); a replica behind a connection never raises here."""
        ...

    async def infer(self, request: EncodedRequest) -> EncodedResponse: ...

    async def model_metadata(self, name: str, version: str | None) -> dict[str, Any]: ...

    async def model_ready(self, name: str, version: str | None) -> dict[str, Any]: ...

    async def probe(self) -> bool:
        """True when the replica is ready to serve; never raises."""
        ...

    async def close(self) -> None: ...


class InProcessUpstream:
    """A replica's DataPlane (any InferenceService) in the gateway's own process: no hop, no copy (what
    Triton does). Typed by the protocol, so the gateway never imports the replica's server package."""

    local = True

    def __init__(self, plane: InferenceService, address: str = "inprocess") -> None:
        self.plane = plane
        self.address = address
        # Bound once: the hot path then skips an attribute lookup per request.
        self.admit = plane.admit
        self.infer = plane.infer
        self.model_metadata = plane.model_metadata
        self.model_ready = plane.model_ready

    async def probe(self) -> bool:
        try:
            return self.plane.ready()
        except ConveyorError:
            return False

    async def close(self) -> None:
        return None
