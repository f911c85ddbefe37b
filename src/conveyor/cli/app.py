"""The whole ``conveyor`` command tree as one Typer app: what docs/cli.md is generated from
(``typer conveyor.cli.app utils docs``) and what tests drive in-process. The command itself builds only the
branch it runs (conveyor.cli.commands)."""

from conveyor.cli.commands import build

app = build()
