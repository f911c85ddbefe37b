"""The ``conveyor`` command tree, built from a table so that one command imports only its own module.

Every ``conveyor`` run pays for what it imports and for Typer's reading of each command's signature: the
whole tree cost about 0.8 s of CPU before the first line of any command (the suite and users' scripts run
thousands). ``build(name)`` makes a tree holding the one command or group asked for; ``build()`` the whole
tree, for ``--help``, an unknown command's suggestions and docs/cli.md (``conveyor.cli.app``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import typer

from conveyor import __version__


@dataclass(frozen=True)
class Entry:
    module: str  # under conveyor.cli
    attribute: str  # a command function, or a typer.Typer for a group
    group: bool = False


# In the order of `conveyor --help`.
COMMANDS: dict[str, Entry] = {
    "up": Entry("up", "up"),
    "server": Entry("up", "server"),
    "gateway": Entry("gateway", "gateway"),
    "models": Entry("models", "app", group=True),
    "optimize": Entry("optimize", "optimize"),
    "validate": Entry("validate", "validate"),
    "tune": Entry("tune", "tune"),
    "fuse": Entry("fuse", "fuse"),
    "keys": Entry("keys", "app", group=True),
    "serve": Entry("serve", "serve"),
    "predict": Entry("predict", "predict"),
    "backup": Entry("backup", "backup"),
    "restore": Entry("backup", "restore"),
    "audit": Entry("audit", "app", group=True),
    "certs": Entry("certs", "app", group=True),
    "tokens": Entry("tokens", "app", group=True),
    "alerts": Entry("alerts", "app", group=True),
    "export": Entry("export", "app", group=True),
    "build": Entry("build", "build"),
    "edge": Entry("edge", "app", group=True),
    "init": Entry("init", "app", group=True),
    # Deployments, through the management API of a running control plane (CONVEYOR_URL).
    "apply": Entry("deployments", "apply"),
    "diff": Entry("deployments", "diff"),
    "get": Entry("inspect", "get_app", group=True),
    "describe": Entry("inspect", "describe_app", group=True),
    "delete": Entry("deployments", "delete_app", group=True),
    "scale": Entry("deployments", "scale"),
    "rollback": Entry("deployments", "rollback"),
    "history": Entry("deployments", "history"),
    "rollout": Entry("rollouts", "app", group=True),
    "endpoints": Entry("inspect", "endpoints"),
    "logs": Entry("logs", "logs"),
    "dashboard": Entry("dashboard", "dashboard"),
}


def version() -> None:
    """Print the Conveyor version."""
    typer.echo(__version__)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


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


def build(name: str | None = None) -> typer.Typer:
    """The ``conveyor`` app with only command ``name`` (a key of COMMANDS, or "version"), or all of them."""
    from conveyor.cli import help_labels

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
    for command, entry in COMMANDS.items():
        if name is not None and command != name:
            continue
        target = getattr(importlib.import_module(f"conveyor.cli.{entry.module}"), entry.attribute)
        if entry.group:
            app.add_typer(target, name=command)
        else:
            app.command(command)(target)
    if name is None or name == "version":
        app.command("version")(version)
    app.callback()(_options)
    return app


def requested(args: list[str]) -> str | None:
    """The command ``args`` (the command line without the program) run, when it is one of the tree's;
    None for anything else (no command, an option first, a misspelt name): those need the whole tree."""
    if not args or args[0].startswith("-"):
        return None
    return args[0] if args[0] in COMMANDS or args[0] == "version" else None
