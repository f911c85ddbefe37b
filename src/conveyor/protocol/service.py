"""The one interface both front ends (REST, gRPC) serve: a replica's DataPlane and the gateway implement it.

Inference travels as V2 REST bodies (JSON, or JSON + binary tensor data) so that a gateway can forward a
request to a replica without decoding or re-encoding tensors; each side decodes at most once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version as _dist_version
from typing import Any, Protocol

SERVER_NAME = "conveyor"
EXTENSIONS = ["binary_tensor_data"]
SERVER_VERSION = _dist_version("conveyor")


def server_metadata() -> dict[str, Any]:
    """V2 server metadata, the same from a replica and from the gateway."""
    return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": list(EXTENSIONS)}


@dataclass(slots=True)
class EncodedRequest:
    """An inference request as V2 REST body bytes; ``json_length`` is set when binary data follows.

    Never changed once made (a hop that needs another version makes a new one). Not ``frozen``: a frozen
    dataclass sets each field through ``object.__setattr__``, which made one of these cost 1.2 µs instead of
    0.24 µs (timeit, this machine), and every request makes one or two."""

    model: str
    version: str | None
    body: bytes
    json_length: int | None
    request_id: str
    traceparent: str | None = None  # the span of the server that took it (observe/trace.py), for the next hop
    parent: str | None = None  # the caller's span, when the caller was a Conveyor gateway (the span export's)
    headers: Sequence[tuple[bytes | str, bytes | str]] = ()
    """The request's header pairs as its front end has them, not copied: HTTP's (bytes, bytes) with lower-case
    names, gRPC's metadata (str, str or bytes). Read only by a rollout's A/B split (gateway/split.py)."""


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
