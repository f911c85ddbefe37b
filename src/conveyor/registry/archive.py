"""The backup archive's format: its members, the summary of what it holds, and helpers both sides share."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.script import ScriptDirectory

from conveyor import errors
from conveyor.registry.db import MIGRATIONS_DIR

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ROWS = "registry.json"
ARTIFACTS = "artifacts/"
# The row lists of registry.json. An archive of schema 0003 or older lacks signatures, tokens and
# audit_records; one of schema 0004 or older lacks alert_rules and alerts; one of schema 0005 or older lacks
# rollouts and rollout_events; one of schema 0006 or older lacks validations; one of schema 0008 or older
# lacks edge_nodes: each absent list counts as empty.
TABLES = (
    "models",
    "versions",
    "aliases",
    "deployments",
    "revisions",
    "events",
    "signatures",
    "tokens",
    "audit_records",
    "alert_rules",
    "alerts",
    "rollouts",
    "rollout_events",
    "validations",
    "edge_nodes",
)
CHUNK = 1024 * 1024

Progress = Callable[[int, int], None]  # (bytes done, bytes total) over the artifacts


@dataclass(frozen=True)
class BackupSummary:
    """What a backup holds (or a restore wrote): row counts per table and the artifacts."""

    path: str
    schema_revision: str
    models: int
    versions: int
    aliases: int
    deployments: int
    revisions: int
    events: int
    artifacts: int
    artifact_bytes: int
    signatures: int = 0
    tokens: int = 0  # salted hashes only: a token itself is never stored
    audit_records: int = 0
    alert_rules: int = 0  # applied kind: AlertRule resources
    alerts: int = 0  # alert states: pending, firing and recently resolved
    rollouts: int = 0  # progressive rollouts of deployments, active or ended
    rollout_events: int = 0
    validations: int = 0  # conveyor validate runs (the newest of a version is its verdict)
    edge_nodes: int = 0  # edge nodes following deployments (conveyor edge run)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def known_revisions() -> set[str]:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return {r.revision for r in ScriptDirectory.from_config(cfg).walk_revisions()}


def conveyor_version() -> str:
    from conveyor import __version__

    return __version__


def is_gzip(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return True
    if name.endswith(".tar"):
        return False
    raise errors.InvalidInput(f"backup file {path} must end in .tar.gz, .tgz or .tar")


def summary(path: Path, manifest: dict[str, Any]) -> BackupSummary:
    counts = manifest["counts"]
    return BackupSummary(
        path=str(path),
        schema_revision=str(manifest["schema_revision"]),
        **{t: int(counts.get(t, 0)) for t in TABLES},
        artifacts=len(manifest["artifacts"]),
        artifact_bytes=sum(int(a["size"]) for a in manifest["artifacts"]),
    )


def parse_json(data: bytes, name: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as e:
        raise errors.IntegrityError(f"backup {name} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise errors.InvalidInput(f"backup {name} is not a JSON object")
    return value


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=1, sort_keys=True).encode()


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat()


def iso_or_none(dt: datetime | None) -> str | None:
    return None if dt is None else iso(dt)


def parse_time(value: str) -> datetime:
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone")
    return dt


def time_or_none(value: str | None) -> datetime | None:
    return None if value is None else parse_time(value)
