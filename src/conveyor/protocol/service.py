"""The one interface both front ends (REST, gRPC) serve: a replica's DataPlane and the gateway implement it.

Inference travels as V2 REST bodies (JSON, or JSON + binary tensor data) so that a gateway can forward a
request to a replica without decoding or re-encoding tensors; each side decodes at most once.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version as _dist_version
from typing import Any, Protocol

SERVER_NAME = "conveyor"
EXTENSIONS = ["binary_tensor_data"]
SERVER_VERSION = _dist_version("conveyor")


def server_metadata() -> dict[str, Any]:
    """V2 server metadata, the same from a replica and from the gateway."""
    return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": list(EXTENSIONS)}


@dataclass(frozen=True, slots=True)
class EncodedRequest:
    """An inference request as V2 REST body bytes; ``json_length`` is set when binary data follows."""

    model: str
    version: str | None
    body: bytes
    json_length: int | None
    request_id: str
    traceparent: str | None = None  # the span of the server that took it (observe/trace.py), for the next hop
    parent: str | None = None  # the caller's span, when the caller was a Conveyor gateway (the span export's)


@dataclass(frozen=True, slots=True)
class EncodedResponse:
    body: bytes
    json_length: int | None
    request_id: str
    model_version: str | None = None


class InferenceService(Protocol):
    """What a V2 front end needs. Errors are ``conveyor.errors`` exceptions (NotFound, InvalidInput, ...)."""

    def live(self) -> bool: ...

    def ready(self) -> bool: ...

    def server_metadata(self) -> dict[str, Any]: ...

    async def model_metadata(self, name: str, version: str | None) -> dict[str, Any]: ...

    async def model_ready(self, name: str, version: str | None) -> dict[str, Any]: ...

    def authorize(self, name: str, version: str | None, authorization: str | None) -> None:
        """Raise Unauthenticated / PermissionDenied when the caller (its ``Authorization`` header value) may
        not call this model, Overloaded when it is over its rate limit; asked before ``admit``, with the
        request's head."""
        ...

    def admit(self, name: str, version: str | None) -> None:
        """Raise Overloaded when a request for this model would be refused now, before its body is read or
        decoded, so a refusal costs next to nothing; return otherwise (``infer`` still decides, and raises
        every other error, NotFound included)."""
        ...

    async def infer(self, request: EncodedRequest) -> EncodedResponse: ...
