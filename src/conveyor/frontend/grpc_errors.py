"""The one mapping from error codes to gRPC status codes, in step with the HTTP table (http_errors.py)."""

from __future__ import annotations

import math

import grpc

from conveyor.errors import ConveyorError

# Same code, same meaning as STATUS_BY_CODE (HTTP). Two choices need a reason:
# - too_large -> INVALID_ARGUMENT (HTTP 413): the request can never succeed as sent. RESOURCE_EXHAUSTED is
#   kept for backpressure (HTTP 429), which clients and the gateway may retry after "retry-after".
# - conflict -> FAILED_PRECONDITION (HTTP 409): Conveyor's conflicts are state conflicts (an alias on a
#   version being deleted), what gRPC's guide reserves that code for; nothing "already exists".
# - disk_full -> RESOURCE_EXHAUSTED (HTTP 507): gRPC's guide names "the entire file system is out of space"
#   under it; HTTP has a status of its own for it, a server-side one.
STATUS_BY_CODE: dict[str, grpc.StatusCode] = {
    "invalid_argument": grpc.StatusCode.INVALID_ARGUMENT,
    "unsupported_media_type": grpc.StatusCode.INVALID_ARGUMENT,
    "too_large": grpc.StatusCode.INVALID_ARGUMENT,
    "failed_precondition": grpc.StatusCode.FAILED_PRECONDITION,
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "permission_denied": grpc.StatusCode.PERMISSION_DENIED,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "conflict": grpc.StatusCode.FAILED_PRECONDITION,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "resource_exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "deadline_exceeded": grpc.StatusCode.DEADLINE_EXCEEDED,
    "disk_full": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "data_loss": grpc.StatusCode.DATA_LOSS,
    "internal": grpc.StatusCode.INTERNAL,
}
RETRY_AFTER = "retry-after"
_RETRYABLE = {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}


def grpc_status_for(exc: ConveyorError) -> grpc.StatusCode:
    return STATUS_BY_CODE.get(exc.code, grpc.StatusCode.INTERNAL)


def retry_metadata(exc: ConveyorError) -> tuple[tuple[str, str], ...]:
    """``retry-after`` in whole seconds for backpressure and unavailability, as HTTP sends with 429 / 503."""
    if grpc_status_for(exc) not in _RETRYABLE:
        return ()
    seconds = getattr(exc, "retry_after_s", 1.0)
    return ((RETRY_AFTER, str(max(1, math.ceil(seconds)))),)
