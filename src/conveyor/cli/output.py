"""How the CLI talks back: Rich tables for people, ``--json`` for scripts, one-line errors and exit codes."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from conveyor.errors import ConveyorError

# Output that is not a terminal (a pipe, a file) is read by a script or kept: no line is cut or wrapped to fit
# a screen (Rich would otherwise assume 80 columns, print `iris-…` and break URLs). Tables then take their
# natural width; on a terminal Rich fits them to the window as usual.
PIPE_WIDTH = 4096


def _console(*, stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=PIPE_WIDTH, soft_wrap=True)


console = _console(stderr=False)
err_console = _console(stderr=True)

# The CLI's one mapping table: error code -> process exit status.
EXIT_CODES: dict[str, int] = {
    "internal": 1,
    "invalid_argument": 2,
    "unsupported_media_type": 2,
    "too_large": 2,
    "not_found": 3,
    "conflict": 4,
    "data_loss": 5,
    "failed_precondition": 6,
    "unavailable": 7,
    "resource_exhausted": 8,
    "deadline_exceeded": 9,
    "disk_full": 10,
    "unauthenticated": 11,
    "permission_denied": 12,
}


def exit_code_for(error: ConveyorError) -> int:
    return EXIT_CODES.get(error.code, 1)


def fail(message: str, code: int = 1) -> None:
    """Print one error line to stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(code)


def print_json(data: Any) -> None:
    """JSON on stdout, for scripts (no colour, no wrapping)."""
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())
    sys.stdout.write("\n")
    sys.stdout.flush()


def titled_table(
    title: str, columns: tuple[str, ...], rows: list[list[str]], right: tuple[str, ...] = ()
) -> Table:
    """A Rich table with its title on the left, one column per name (those in ``right`` right-aligned)."""
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, justify="right" if col in right else "left")
    for row in rows:
        table.add_row(*row)
    return table


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def human_time(iso: str | datetime | None) -> str:
    if iso is None:
        return "-"
    dt = iso if isinstance(iso, datetime) else datetime.fromisoformat(str(iso))
    return dt.astimezone().strftime("%Y-%m-%d %H:%M")


def shape_str(shape: Any) -> str:
    return "[" + ", ".join("?" if int(d) < 0 else str(d) for d in shape) + "]"
