"""Entry point of the ``conveyor`` command: wires the command groups and turns errors into one line."""

from __future__ import annotations

import contextlib
import sys
from typing import NoReturn

import click
import typer
from pydantic import ValidationError
from rich.markup import escape
from typer.exceptions import TyperException

from conveyor import __version__
from conveyor.cli import (
    alerts,
    audit,
    backup,
    build,
    certs,
    dashboard,
    deployments,
    edge,
    export,
    fuse,
    gateway,
    help_labels,
    init,
    inspect,
    keys,
    logs,
    models,
    optimize,
    predict,
    rollouts,
    serve,
    tokens,
    tune,
    up,
    validate,
)
from conveyor.cli.output import err_console, exit_code_for
from conveyor.errors import ConveyorError, DiskFull, InvalidInput, is_disk_full

help_labels.install()  # TEXT, INTEGER, PATH in --help and docs/cli.md, not Python's <str>, <bool>

app = typer.Typer(
    name="conveyor",
    help="Conveyor: register a model, serve it over the Open Inference Protocol, predict with it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("up")(up.up)
app.command("server")(up.server)
app.command("gateway")(gateway.gateway)
app.add_typer(models.app, name="models")
app.command("optimize")(optimize.optimize)
app.command("validate")(validate.validate)
app.command("tune")(tune.tune)
app.command("fuse")(fuse.fuse)
app.add_typer(keys.app, name="keys")
app.command("serve")(serve.serve)
app.command("predict")(predict.predict)
app.command("backup")(backup.backup)
app.command("restore")(backup.restore)
app.add_typer(audit.app, name="audit")
app.add_typer(certs.app, name="certs")
app.add_typer(tokens.app, name="tokens")
app.add_typer(alerts.app, name="alerts")
app.add_typer(export.app, name="export")
app.command("build")(build.build)
app.add_typer(edge.app, name="edge")
app.add_typer(init.app, name="init")
# Deployments, through the management API of a running control plane (CONVEYOR_URL).
app.command("apply")(deployments.apply)
app.command("diff")(deployments.diff)
inspect.get_app.command("edges")(edge.get_edges)
app.add_typer(inspect.get_app, name="get")
app.add_typer(inspect.describe_app, name="describe")
app.add_typer(deployments.delete_app, name="delete")
app.command("scale")(deployments.scale)
app.command("rollback")(deployments.rollback)
app.command("history")(deployments.history)
app.add_typer(rollouts.app, name="rollout")
app.command("endpoints")(inspect.endpoints)
app.command("logs")(logs.logs)
app.command("dashboard")(dashboard.dashboard)


@app.command("version")
def version() -> None:
    """Print the Conveyor version."""
    typer.echo(__version__)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _options(
    show_version: bool = typer.Option(
        False,
        "--version",
        help="Print the Conveyor version and exit.",
        callback=_print_version,
        is_eager=True,
    ),
) -> None:
    """Options of the conveyor command itself (the help text is the app's)."""


def main() -> None:
    """Run the CLI: a ConveyorError becomes one line on stderr and its exit code, never a traceback."""
    command = typer.main.get_command(app)
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
