"""The one exception tree of Conveyor.

Every error carries a transport-neutral ``code``; each transport maps codes in exactly one table
(``conveyor.server.errors`` for HTTP, the CLI's exit codes in ``conveyor.cli.output``).

    ConveyorError                      code="internal"
    ├── InvalidInput                   code="invalid_argument"   bad request data, bad arguments
    │   ├── UnsupportedMediaType       code="unsupported_media_type"
    │   └── PayloadTooLarge            code="too_large"          body / element limits
    ├── NotFound                       code="not_found"          model, version, alias, artifact
    ├── Conflict                       code="conflict"           alias points at a version being deleted, ...
    ├── IntegrityError                 code="data_loss"          artifact digest mismatch
    ├── ConversionError                code="failed_precondition" a format cannot be imported / parity failed
    ├── Unavailable                    code="unavailable"        a server or database cannot be reached
    └── InferenceFailed                code="internal"           the runtime failed on valid input
"""

from __future__ import annotations

from typing import Any


class ConveyorError(Exception):
    """Base of every error Conveyor raises on purpose."""

    code = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class InvalidInput(ConveyorError):
    code = "invalid_argument"


class UnsupportedMediaType(InvalidInput):
    code = "unsupported_media_type"


class PayloadTooLarge(InvalidInput):
    code = "too_large"


class NotFound(ConveyorError):
    code = "not_found"


class Conflict(ConveyorError):
    code = "conflict"


class IntegrityError(ConveyorError):
    code = "data_loss"


class ConversionError(ConveyorError):
    code = "failed_precondition"


class Unavailable(ConveyorError):
    code = "unavailable"


class InferenceFailed(ConveyorError):
    code = "internal"
