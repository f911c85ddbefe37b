"""``conveyor logs``: the JSON-lines logs of every process of the home, merged by time, filtered, followed."""

from __future__ import annotations

import sys
import time
from datetime import UTC
from typing import Annotated, Any

import typer
from rich.text import Text

from conveyor.cli.audit import parse_since
from conveyor.cli.output import console
from conveyor.settings import get_settings

COMPONENTS = ("control", "gateway", "replica", "serve")
FOLLOW_POLL_S = 0.25
_LEVEL_STYLE = {"debug": "dim", "info": "", "warning": "yellow", "error": "bold red", "critical": "bold red"}
_HEAD = ("time", "level", "component", "replica", "logger", "message")


def logs(
    deployment: Annotated[
        str | None,
        typer.Argument(
            metavar="DEPLOYMENT",
            help="Only lines about this deployment: its requests and its replicas' lines.",
        ),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep printing new lines (of new processes too) until Ctrl-C."),
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only lines from this long ago (30s, 10m, 1h, 2d) or this time (2026-12-01T10:00)."
        ),
    ] = None,
    request_id: Annotated[
        str | None, typer.Option("--request-id", help="Only the lines of this request (x-request-id).")
    ] = None,
    component: Annotated[
        list[str] | None,
        typer.Option(
            "--component", "-c", help=f"Only lines of these processes: {', '.join(COMPONENTS)} (repeatable)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON lines as they are stored.")] = False,
) -> None:
    """Print the logs of the control plane, the gateway and every replica, oldest first.

    Server processes write JSON lines under the home (CONVEYOR_HOME/logs, CONVEYOR_LOG_DIR); this reads
    them all, rotated files included, and merges them by time. A request's lines (the gateway's and its
    replica's) share its request id and trace id: `conveyor logs --request-id ID`.
    """
    from conveyor.observe.logread import Follower, LogFilter, read_lines

    components = frozenset(component or ())
    unknown = sorted(components - set(COMPONENTS))
    if unknown:
        raise typer.BadParameter(
            f"{', '.join(unknown)} is not a component; use {', '.join(COMPONENTS)}", param_hint="--component"
        )
    start = None
    if since is not None:
        start = parse_since(since).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    keep = LogFilter(since=start, request_id=request_id, deployment=deployment, components=components)
    directory = get_settings().effective_log_dir
    show = _raw if as_json else _pretty
    follower = Follower(directory) if follow else None  # opened first: no line falls between read and follow
    for line in read_lines(directory, keep):
        show(line[1], line[2])
    if follower is None:
        return
    try:
        while True:
            for line in follower.poll():
                if keep.keeps(line):
                    show(line[1], line[2])
            sys.stdout.flush()
            time.sleep(FOLLOW_POLL_S)
    except KeyboardInterrupt:
        pass
    finally:
        follower.close()


def _raw(raw: bytes, doc: dict[str, Any]) -> None:
    sys.stdout.write(raw.decode(errors="replace") + "\n")


def _pretty(raw: bytes, doc: dict[str, Any]) -> None:
    """``2026-12-01T10:00:00.123Z gateway WARNING conveyor.gateway: message key=value ...``"""
    level = str(doc.get("level", ""))
    who = str(doc.get("component", "?"))
    if doc.get("replica"):
        who += f"/{doc['replica']}"
    stamp = str(doc.get("time", ""))
    line = Text(f"{stamp[:23]}Z " if len(stamp) > 23 else f"{stamp} ", style="dim")
    line.append(f"{who} ", style="cyan")
    line.append(f"{level.upper()} ", style=_LEVEL_STYLE.get(level, ""))
    line.append(f"{doc.get('logger', '')}: {doc.get('message', '')}")
    fields = [f"{k}={v}" for k, v in doc.items() if k not in _HEAD and k != "exception" and v is not None]
    if fields:
        line.append(" " + " ".join(fields), style="dim")
    if doc.get("exception"):
        line.append(f"\n{doc['exception']}")
    console.print(line, soft_wrap=True, highlight=False)
