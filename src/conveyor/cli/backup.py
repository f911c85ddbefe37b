"""``conveyor backup`` / ``conveyor restore``: the registry and its artifacts in one verified archive."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

import conveyor
from conveyor.cli.output import console, human_size, print_json, titled_table

if TYPE_CHECKING:
    from conveyor.registry.archive import BackupSummary

# The registry modules (SQLAlchemy, Alembic) load inside the commands: imported with the CLI they cost every
# `conveyor` process ~30 MB of RSS, `conveyor serve FILE` included, which never opens the registry.

FileArg = Annotated[Path, typer.Argument(help="Backup archive: .tar.gz, .tgz or .tar.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]


def backup(path: FileArg, as_json: JsonOpt = False) -> None:
    """Write the registry (models, versions, aliases, signatures, deployments, token hashes, the audit
    log) and every artifact (decrypted) to FILE, verified."""
    from conveyor.registry.backup import backup as write_backup

    _run(write_backup, path, "Backing up", "Backed up to", as_json)


def restore(path: FileArg, as_json: JsonOpt = False) -> None:
    """Restore FILE into an empty registry; every artifact is verified before anything is written."""
    from conveyor.registry.restore import restore as read_backup

    _run(read_backup, path, "Verifying and restoring", "Restored from", as_json)


def _run(action: Callable[..., BackupSummary], path: Path, label: str, verb: str, as_json: bool) -> None:
    with conveyor.open_registry() as registry:
        if as_json:
            summary = action(registry, path)
        else:
            columns = (TextColumn(label), BarColumn(), DownloadColumn(), TimeRemainingColumn())
            with Progress(*columns, console=console, transient=True) as bar:
                task = bar.add_task(label, total=None)
                summary = action(
                    registry, path, lambda done, total: bar.update(task, completed=done, total=total)
                )
    if as_json:
        print_json(summary.to_dict())
        return
    rows = [
        [key, str(getattr(summary, key))]
        for key in ("models", "versions", "aliases", "deployments", "revisions", "events", "artifacts")
    ]
    rows += [
        [key.replace("_", " "), str(getattr(summary, key))]
        for key in ("signatures", "tokens", "audit_records", "alert_rules", "alerts")
    ]
    rows.append(["artifact bytes", human_size(summary.artifact_bytes)])
    rows.append(["schema revision", summary.schema_revision])
    table = titled_table(f"{verb} {path.name}", ("what", "count"), rows, right=("count",))
    console.print(table)
