"""The one exception tree of Conveyor.

Every error carries a transport-neutral ``code``; each transport maps codes in exactly one table
(``conveyor.frontend.http_errors`` for HTTP, the CLI's exit codes in ``conveyor.cli.output``).

    ConveyorError                      code="internal"
    ├── InvalidInput                   code="invalid_argument"   bad request data, bad arguments
    │   ├── UnsupportedMediaType       code="unsupported_media_type"
    │   └── PayloadTooLarge            code="too_large"          body / element limits
    ├── Unauthenticated                code="unauthenticated"    no token, or a bad, expired or revoked one
    ├── PermissionDenied               code="permission_denied"  the token's role does not allow the action
    ├── NotFound                       code="not_found"          model, version, alias, artifact
    ├── Conflict                       code="conflict"           alias points at a version being deleted, ...
    ├── IntegrityError                 code="data_loss"          artifact digest mismatch
    ├── ConversionError                code="failed_precondition" a format cannot be imported / parity failed
    ├── Unavailable                    code="unavailable"        a server or database cannot be reached
    ├── Overloaded                     code="resource_exhausted" a bounded queue is full: retry later
    ├── DiskFull                       code="disk_full"          a write found no space; nothing half-written
    ├── DeadlineExceeded               code="deadline_exceeded"  a request outlived its timeout
    └── InferenceFailed                code="internal"           the runtime failed on valid input
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# What the kernel says when a write finds no room: a full filesystem, or the user's quota on it.
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


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


class Unauthenticated(ConveyorError):
    """The caller did not prove who it is: no token, or one that is malformed, unknown, expired or revoked."""

    code = "unauthenticated"


class PermissionDenied(ConveyorError):
    """The caller is known, and its role (or its model glob) does not allow what it asked."""

    code = "permission_denied"


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


class Overloaded(ConveyorError):
    """Backpressure: the work was refused before it started, so retrying later is safe."""

    code = "resource_exhausted"

    def __init__(self, message: str, retry_after_s: float = 1.0, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after_s = retry_after_s


class DiskFull(ConveyorError):
    """A write failed for lack of space. Whoever raises it removed what it had half-written, so freeing
    space and retrying is safe; retrying at once is not useful (hence not ``resource_exhausted``)."""

    code = "disk_full"


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is the kernel's "no space left" (ENOSPC) or "quota exceeded" (EDQUOT)."""
    return isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS


@contextmanager
def disk_full_as_error(what: str) -> Iterator[None]:
    """Inside, an OSError for lack of space becomes ``DiskFull("disk full: cannot write WHAT ...")``.

    The caller's own cleanup (a temp file removed) runs inside, before the translation."""
    try:
        yield
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise DiskFull(f"disk full: cannot write {what} ({exc.strerror})", path=exc.filename) from exc


class DeadlineExceeded(ConveyorError):
    code = "deadline_exceeded"


class InferenceFailed(ConveyorError):
    code = "internal"
