"""How a log record becomes a line: one structlog pipeline for stdlib and structlog loggers alike.

JSON lines (``time``, ``level``, ``component``, ``logger``, ``message``, then every ``extra=`` key of the
record: request_id, model, version, status, latency_ms, traceparent, ...) for the files ``conveyor logs``
reads; a text line (``time LEVEL logger: message key=value``) for a terminal. Both end with the redactor:
bearer tokens and Conveyor tokens never reach a line, wherever they appear in it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import structlog
from structlog.stdlib import ProcessorFormatter
from structlog.types import EventDict, Processor, WrappedLogger

ACCESS_LOGGER = "conveyor.access"  # one record per sampled request (observe/logs.py)
# Keys of a record's ``extra=`` that are bookkeeping, not information: dropped from lines.
_DROP = frozenset({"color_message", "repeat_summary", "taskName", "positional_args"})
# A field this long is not a log message: tensor data or a request body by mistake. Cut, never written whole.
MAX_FIELD_CHARS = 2048
_SECRETS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer)\s+[^\s\"',;}]+"), r"\1 ***"),
    # Any other scheme's credential (Basic ...): the scheme's name goes too.
    (
        re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?!bearer\b)(?:[A-Za-z]+\s+)?[^\s\"',;}]+"),
        r"\1***",
    ),
    # Conveyor tokens: cvy_<public id>_<secret>; the id finds the token (conveyor tokens list), so it stays.
    (re.compile(r"\b(cvy_[0-9a-f]{16}_)[A-Za-z0-9_-]+"), r"\1***"),
    (re.compile(r"\bcvy_(?![0-9a-f]{16}_\*\*\*)[A-Za-z0-9_-]+"), "cvy_***"),
)


def redact(line: str) -> str:
    """The line with every bearer credential, Authorization value and Conveyor token replaced by ***."""
    if "earer" in line or "cvy_" in line or "uthorization" in line:  # the common case: nothing to do
        for pattern, replacement in _SECRETS:
            line = pattern.sub(replacement, line)
    return line


def _iso_utc(created: float) -> str:
    """Fixed width (microseconds, Z) so that lines of every process sort by time as plain strings."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1e6):06d}Z"


def _stamp(component: str, replica: str | None) -> Processor:
    def stamp(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
        record: logging.LogRecord = event["_record"]
        head: dict[str, Any] = {
            "time": _iso_utc(record.created),
            "level": record.levelname.lower(),
            "component": component,
        }
        if replica is not None:
            head["replica"] = replica
        head["logger"] = record.name
        head["message"] = event.pop("event", "")
        head.update(event)  # field order: the head first, then the record's own keys
        return head

    return stamp


def _extras(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    """The record's ``extra=`` keys as fields (what structlog.stdlib.ExtraAdder does), minus bookkeeping."""
    record: logging.LogRecord | None = event.get("_record")
    if record is not None:
        for key, value in record.__dict__.items():
            if key not in _RECORD_KEYS and key not in _DROP and not key.startswith("_"):
                event.setdefault(key, value)
    return event


_RECORD_KEYS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def _bounded(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    for key, value in event.items():
        if isinstance(value, str) and len(value) > MAX_FIELD_CHARS and key != "exception":
            event[key] = f"{value[:MAX_FIELD_CHARS]}… ({len(value) - MAX_FIELD_CHARS} characters cut)"
    return event


def _json(logger: WrappedLogger, method: str, event: EventDict) -> str:
    return orjson.dumps(event, default=str).decode()


def _text(logger: WrappedLogger, method: str, event: EventDict) -> str:
    """``2026-01-02T03:04:05.678901Z WARNING conveyor.gateway: message request_id=... model=...``"""
    fields = [
        f"{k}={v}" for k, v in event.items() if k not in _TEXT_HEAD and k != "exception" and v is not None
    ]
    line = f"{event['time']} {event['level'].upper()} {event['logger']}: {event['message']}"
    if fields:
        line += " " + " ".join(fields)
    if "exception" in event:
        line += "\n" + str(event["exception"])
    return line


_TEXT_HEAD = frozenset({"time", "level", "component", "replica", "logger", "message"})


def _redact(logger: WrappedLogger, method: str, line: str) -> str:
    return redact(line)


class _Formatter(ProcessorFormatter):
    """structlog's pipeline, except for access records in JSON: one per sampled request (every request, at
    access_log_sample=1), so they take a direct path to the same line at about half the cost."""

    def __init__(self, kind: str, head: dict[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fast = kind == "json"
        self._head = head

    def format(self, record: logging.LogRecord) -> str:
        if not (self._fast and record.name == ACCESS_LOGGER and not record.exc_info):
            return super().format(record)
        doc: dict[str, Any] = {"time": _iso_utc(record.created), "level": record.levelname.lower()}
        doc.update(self._head)
        doc["logger"] = record.name
        doc["message"] = record.getMessage()
        for key, value in record.__dict__.items():
            if key not in _RECORD_KEYS and key not in _DROP and key[0] != "_":
                doc[key] = value
        return redact(orjson.dumps(_bounded(None, "", doc), default=str).decode())


def formatter(kind: str, component: str, replica: str | None = None) -> logging.Formatter:
    """The formatter of a handler: ``json`` (files, collectors) or ``text`` (a terminal)."""
    head = {"component": component} if replica is None else {"component": component, "replica": replica}
    render: Callable[[WrappedLogger, str, EventDict], str] = _json if kind == "json" else _text
    # Every step in ``processors``: they run for stdlib records and structlog events alike (the
    # foreign_pre_chain would run for stdlib records only).
    return _Formatter(
        kind,
        head,
        processors=[
            _extras,
            _stamp(component, replica),
            structlog.processors.format_exc_info,
            _bounded,
            ProcessorFormatter.remove_processors_meta,
            render,
            _redact,  # on the finished line: whatever field, traceback or message a secret hides in
        ],  # type: ignore[list-item]
    )


def configure_structlog() -> None:
    """``structlog.get_logger(name)`` loggers hand their events to the stdlib handlers, so both kinds of
    logger go through the same formatters (and the repeat filter, and the files)."""
    factory = structlog.stdlib.LoggerFactory()
    # The factory made every stdlib logger created from now on find its caller the structlog way, a frame
    # walk per record; no line shows the caller, so loggers stay plain.
    logging.setLoggerClass(logging.Logger)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=factory,
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def line_fields(line: Mapping[str, Any]) -> dict[str, Any]:
    """A parsed JSON line's fields other than the head (for readers that show them as key=value)."""
    return {k: v for k, v in line.items() if k not in _TEXT_HEAD}
