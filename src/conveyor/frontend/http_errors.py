"""The one mapping from error codes to HTTP statuses, and the ``{"error": ...}`` body of every failure."""

from __future__ import annotations

import orjson
from starlette.responses import Response

from conveyor.errors import ConveyorError

STATUS_BY_CODE: dict[str, int] = {
    "invalid_argument": 400,
    "failed_precondition": 400,
    "unsupported_media_type": 415,
    "too_large": 413,
    "unauthenticated": 401,
    "permission_denied": 403,
    "not_found": 404,
    "conflict": 409,
    "unavailable": 503,
    "resource_exhausted": 429,
    "deadline_exceeded": 504,
    "disk_full": 507,  # Insufficient Storage: the server could not store what the request needs
    "data_loss": 500,
    "internal": 500,
}


def status_for(exc: ConveyorError) -> int:
    return STATUS_BY_CODE.get(exc.code, 500)


BACKPRESSURE = frozenset({429, 503})
"""Statuses that tell a client to come back: answered with ``retry-after: 1``."""
RETRY_AFTER_S = 1
CHALLENGE = 'Bearer realm="conveyor"'
"""``www-authenticate`` of every 401 (RFC 6750): the client should send ``Authorization: Bearer <token>``."""


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    headers = dict(headers or {})
    if status in BACKPRESSURE:
        # Overload is backpressure: tell clients when to come back.
        headers.setdefault("retry-after", str(RETRY_AFTER_S))
    elif status == 401:
        headers.setdefault("www-authenticate", CHALLENGE)
    return Response(orjson.dumps({"error": message}), status, headers, media_type="application/json")
