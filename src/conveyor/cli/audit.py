"""``conveyor audit log`` / ``conveyor audit verify``: read the registry's hash-chained audit log, check it.

Both read the registry directly (CONVEYOR_HOME / CONVEYOR_DATABASE_URL), as ``conveyor models`` does.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape

import conveyor
from conveyor.cli.output import console, print_json, titled_table
from conveyor.errors import IntegrityError, InvalidInput

app = typer.Typer(help="Read the audit log of every change, and verify its hash chain.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
_AGO = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_SUMMARY_MAX = 80


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """``30m``, ``1h``, ``2d``, ``1w`` ago, or an ISO 8601 time (local time unless it names a zone)."""
    text = value.strip()
    if m := _AGO.match(text):
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"--since {value!r}: use a duration (30m, 1h, 2d, 1w) or a time (2026-12-01T10:00)"
        ) from None
    return when.astimezone(UTC)  # a naive time is taken as local time


@app.command("log")
def log(
    since: Annotated[
        str | None,
        typer.Option(help="Only records from this long ago (30m, 1h, 2d) or this time (2026-12-01T10:00)."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many (the newest).")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List the audit records, oldest first: who changed what, and when."""
    start = parse_since(since) if since is not None else None
    with conveyor.open_registry() as registry:
        entries = registry.audit.list(since=start, limit=limit)
    if as_json:
        print_json([e.to_dict() for e in entries])
        return
    if not entries:
        console.print("No audit records" + (f" since {since}." if since else " yet."))
        return
    rows = [
        [str(e.seq), _local(e.time), *map(escape, (e.actor, e.action, e.object, summary(e.details)))]
        for e in entries
    ]
    columns = ("seq", "time", "actor", "action", "object", "details")
    console.print(titled_table("Audit log", columns, rows, right=("seq",)))


@app.command("verify")
def verify(as_json: JsonOpt = False) -> None:
    """Check the whole hash chain: exit 0 if intact, else name the first bad record (exit 5)."""
    with conveyor.open_registry() as registry:
        check = registry.audit.verify()
    if as_json:
        print_json({**check.to_dict(), "intact": check.intact})
    if check.problem is not None:
        raise IntegrityError(
            f"audit log broken at seq {check.problem.seq} ({check.problem.kind}): {check.problem.message}",
            seq=check.problem.seq,
        )
    if not as_json:
        console.print(
            f"{check.records} records, chain intact (head: seq {check.head_seq}, hash {check.head_hash})",
            highlight=False,
        )


def summary(details: dict[str, Any]) -> str:
    """``key=value, ...`` on one line (values as JSON, digests cut to 12 characters), cut to 80."""
    parts = []
    for key, value in details.items():
        if isinstance(value, str):
            text = value[:12] if len(value) == 64 else value
        else:
            text = orjson.dumps(value).decode()
        parts.append(f"{key}={text}")
    line = ", ".join(parts)
    return line if len(line) <= _SUMMARY_MAX else line[: _SUMMARY_MAX - 1] + "…"


def _local(time: datetime) -> str:
    return time.astimezone().strftime("%Y-%m-%d %H:%M:%S")
