"""Entry point of the ``conveyor`` command: builds the branch of the command tree a command line runs
(conveyor.cli.commands) and turns errors into one line."""

from __future__ import annotations

import contextlib
import sys
from typing import NoReturn

import click
import typer
from pydantic import ValidationError
from rich.markup import escape
from typer.exceptions import TyperException

from conveyor.cli.commands import build, requested
from conveyor.cli.output import err_console, exit_code_for
from conveyor.errors import ConveyorError, DiskFull, InvalidInput, is_disk_full


def main() -> None:
    """Run the CLI: a ConveyorError becomes one line on stderr and its exit code, never a traceback."""
    # Only the branch of the tree this command line runs: importing and reading every command's signature
    # cost more than most commands do (conveyor.cli.commands).
    command = typer.main.get_command(build(requested(sys.argv[1:])))
    try:
        result = command.main(prog_name="conveyor", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (click.ClickException, TyperException) as exc:
        # Usage errors (unknown command or option, bad value): Typer's own copy of click raises them as
        # TyperException subclasses. One line with a pointer to the command's help; exit 2 for usage errors.
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} -h')" if ctx is not None else ""
        if message.strip():  # empty for "no arguments": the help was printed instead
            err_console.print(f"[bold red]error:[/] {escape(message)}{hint}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except ConveyorError as exc:
        _fail(exc)
    except ValidationError as exc:
        if exc.title != "Settings":  # a model's validation the command did not translate: a bug, below
            _unexpected(exc)
        _fail(InvalidInput(_settings_problem(exc)))
    except OSError as exc:
        what = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
        if is_disk_full(exc):  # a write no command translated itself: still "disk full" and its exit code
            _fail(DiskFull(f"disk full: {what}"))
        err_console.print(f"[bold red]error:[/] {what}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except Exception as exc:  # a bug: still one line; CONVEYOR_DEBUG shows the rest
        _unexpected(exc)
    sys.exit(result if isinstance(result, int) else 0)


def _unexpected(exc: Exception) -> NoReturn:
    from conveyor.settings import get_settings

    with contextlib.suppress(ValidationError):  # settings that do not load cannot ask for debug output
        if get_settings().debug:
            raise exc
    message = f"unexpected {type(exc).__name__}: {exc}".splitlines()[0]
    err_console.print(
        f"[bold red]error:[/] {escape(message)} (set CONVEYOR_DEBUG=1 for details)",
        highlight=False,
        soft_wrap=True,
    )
    sys.exit(1)


def _settings_problem(exc: ValidationError) -> str:
    """One line naming each CONVEYOR_* setting whose value is not valid, and why."""
    problems = []
    for e in exc.errors():
        name = "_".join(str(part) for part in e["loc"]).upper()
        problems.append(f"CONVEYOR_{name}: {e['msg']}" if name else e["msg"])
    return "invalid setting " + "; ".join(problems)


def _fail(exc: ConveyorError) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
    sys.exit(exit_code_for(exc))


if __name__ == "__main__":
    main()
